import Foundation

/// One packet of a capture as `tcpdump -r FILE -nn -e -xx` prints it.
public struct TcpdumpPacket: Equatable {
    /// The length on the wire its summary line gives (`…, length 9000: …`).
    public var length: Int
    public var bytes: [UInt8]
}

/// Reads a capture file back with the real tcpdump (the oracle for the file
/// format): each packet's wire length and every byte it holds.
public func tcpdumpRead(_ path: String) throws -> [TcpdumpPacket] {
    let dump = try runCommand(["tcpdump", "-r", path, "-nn", "-e", "-xx"], check: true).stdout
    var packets: [TcpdumpPacket] = []
    for line in dump.split(separator: "\n") {
        if !line.hasPrefix("\t") {
            let length = line.components(separatedBy: ", length ").dropFirst().first.map { $0.prefix { $0.isNumber } }
            packets.append(TcpdumpPacket(length: length.flatMap { Int($0) } ?? -1, bytes: []))
        } else if let colon = line.firstIndex(of: ":"), !packets.isEmpty {
            // "\t0x0010:  4500 2326 ...": hex digits in pairs, groups apart.
            let digits = Array(line[line.index(after: colon)...].filter(\.isHexDigit))
            packets[packets.count - 1].bytes += stride(from: 0, to: digits.count - 1, by: 2).compactMap {
                UInt8(String(digits[$0...$0 + 1]), radix: 16)
            }
        }
    }
    return packets
}
