import Foundation
import XCTest

/// Reads a capture file back with the real tcpdump and returns each packet's
/// stamp in nanoseconds since the epoch, in file order; nil for a packet
/// whose stamp does not carry nine digits of nanoseconds (so the count tells
/// tcpdump read every packet and the stamps their precision).
public func tcpdumpNanosecondStamps(_ path: String) throws -> [Int?] {
    let read = try runCommand(["tcpdump", "-r", path, "-nn", "-tt", "--time-stamp-precision=nano"], check: true)
    return read.stdout.split(separator: "\n").map { line in
        let parts = line.split(separator: " ")[0].split(separator: ".")
        guard parts.count == 2, parts[1].count == 9, let seconds = Int(parts[0]), let nanoseconds = Int(parts[1]) else {
            return nil
        }
        return seconds * 1_000_000_000 + nanoseconds
    }
}

/// Asserts that tcpdump reads `packets` packets back from the capture at
/// `path`, each stamped in nanoseconds with the receive time: within the
/// wall-clock window `started...ended` (seconds since the epoch, 1 ms of
/// slack), never going back.
public func assertReceiveTimeStamps(
    _ path: String, packets: Int, started: TimeInterval, ended: TimeInterval,
    file: StaticString = #filePath, line: UInt = #line
) throws {
    let stamps = try tcpdumpNanosecondStamps(path)
    XCTAssertEqual(stamps.count, packets, "tcpdump reads back every packet", file: file, line: line)
    let values = stamps.compactMap { $0 }
    XCTAssertEqual(values.count, packets, "every stamp has nine digits of nanoseconds", file: file, line: line)
    XCTAssertEqual(values, values.sorted(), "stamps never go back", file: file, line: line)
    XCTAssertGreaterThanOrEqual(values.first ?? 0, Int(started * 1e9) - 1_000_000, "not before the test began", file: file, line: line)
    XCTAssertLessThanOrEqual(values.last ?? .max, Int(ended * 1e9) + 1_000_000, "not after it ended", file: file, line: line)
}
