import Foundation
import SluiceModules
import SluiceTestSupport
import XCTest

/// The pcap module checked against the real tcpdump: what it reads back is
/// the oracle for the file format.
final class PcapModuleTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("sluicepcap"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    /// Frames with distinct lengths and a sequence number in the payload.
    func frames(_ count: Int, payload: Int = 40) -> [[UInt8]] {
        (0..<count).map { index in
            var builder = FrameBuilder(
                network: index % 3 == 2 ? FrameBuilder.ipv6() : FrameBuilder.ipv4(),
                transport: .udp(source: UInt16(1000 + index), destination: 9))
            builder.payload = be32(UInt32(index)) + [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: payload + index % 7)
            return builder.build()
        }
    }

    /// The packets in `path` as tcpdump reads them: bytes of each.
    func tcpdumpPackets(_ path: String) throws -> [[UInt8]] {
        let result = try runCommand(["tcpdump", "-r", path, "-nn", "-xx"], check: true)
        var packets: [[UInt8]] = []
        for line in result.stdout.split(separator: "\n") {
            if !line.hasPrefix("\t") {
                packets.append([])
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { continue }
            for group in line[line.index(after: colon)...].split(separator: " ") {
                var hex = Substring(group)
                while hex.count >= 2 {
                    packets[packets.count - 1].append(UInt8(hex.prefix(2), radix: 16)!)
                    hex = hex.dropFirst(2)
                }
            }
        }
        return packets
    }

    func testTcpdumpReadsExactlyWhatWasWritten() throws {
        let path = directory.appendingPathComponent("capture.pcap").path
        // A small buffer, so that it fills and is written several times.
        let pcap = try PcapModule(options: .init(path: path, snaplen: 1500, bufferBytes: 4096, format: .pcap))
        let written = frames(100)
        _ = TestUMEM().run(written, through: [pcap], batchSize: 16)
        pcap.flush()
        XCTAssertEqual(try tcpdumpPackets(path), written)
        let snapshot = pcap.snapshot()
        XCTAssertEqual(snapshot.counters["packets"], 100)
        XCTAssertEqual(snapshot.counters["bytes"], UInt64(written.reduce(0) { $0 + $1.count }))
        XCTAssertEqual(snapshot.counters["write_errors"], 0)
        XCTAssertEqual(snapshot.counters["lost_packets"], 0)
        XCTAssertEqual(snapshot.rows, [["path": path]])
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int
        XCTAssertEqual(size, 24 + written.reduce(0) { $0 + 16 + $1.count })
    }

    func testSnaplenCutsFramesAndDecidedFramesAreSkipped() throws {
        let path = directory.appendingPathComponent("short.pcap").path
        let pcap = try PcapModule(options: .init(path: path, snaplen: 64, format: .pcap))
        let long = frames(3, payload: 200)
        let umem = TestUMEM()
        for frame in long { umem.add(frame) }
        let batch = umem.parsedBatch()
        batch.descriptors[1].verdict = .drop
        pcap.process(batch)
        pcap.flush()
        XCTAssertEqual(try tcpdumpPackets(path), [Array(long[0].prefix(64)), Array(long[2].prefix(64))])
        XCTAssertEqual(pcap.snapshot().counters["truncated"], 2)
        // The first record's header: captured length, then the original length.
        let file = try Data(contentsOf: URL(fileURLWithPath: path))
        let lengths = file.withUnsafeBytes { raw in
            (raw.loadUnaligned(fromByteOffset: 24 + 8, as: UInt32.self), raw.loadUnaligned(fromByteOffset: 24 + 12, as: UInt32.self))
        }
        XCTAssertEqual(lengths.0, 64)
        XCTAssertEqual(Int(lengths.1), long[0].count)
    }

    func testRotationKeepsMaxFilesEachReadable() throws {
        let path = directory.appendingPathComponent("rot.pcap").path
        let maxBytes = 2048
        let pcap = try PcapModule(options: .init(path: path, maxBytes: maxBytes, maxFiles: 3))
        let written = frames(120)
        _ = TestUMEM().run(written, through: [pcap], batchSize: 7)
        pcap.flush()
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        XCTAssertEqual(names, ["rot.pcap", "rot.pcap.1", "rot.pcap.2"])
        var readBack: [[UInt8]] = []
        for name in ["rot.pcap.2", "rot.pcap.1", "rot.pcap"] {
            let file = directory.appendingPathComponent(name).path
            let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
            XCTAssertLessThanOrEqual(size, maxBytes, name)
            let packets = try tcpdumpPackets(file)
            XCTAssertFalse(packets.isEmpty, name)
            readBack += packets
        }
        // The three files hold the newest packets, in order, without gaps.
        XCTAssertEqual(readBack, Array(written.suffix(readBack.count)))
        let snapshot = pcap.snapshot()
        XCTAssertEqual(snapshot.counters["packets"], 120)
        XCTAssertEqual(snapshot.counters["files"], snapshot.counters["rotations"].map { $0 + 1 })
        XCTAssertGreaterThan(snapshot.counters["rotations"] ?? 0, 3, "more files were written than kept")
    }

    func testWriteErrorsAreCountedNotThrown() throws {
        // /dev/full accepts open and fails every write with ENOSPC.
        let pcap = try PcapModule(options: .init(path: "/dev/full", snaplen: 128, bufferBytes: 4096))
        let written = frames(200)
        let verdicts = TestUMEM().run(written, through: [pcap])
        pcap.flush()
        XCTAssertTrue(verdicts.allSatisfy { $0 == .pass })
        let snapshot = pcap.snapshot()
        XCTAssertEqual(snapshot.counters["packets"], 200)
        XCTAssertEqual(snapshot.counters["write_errors"], 1, "the file is given up after the first failure")
        XCTAssertEqual(snapshot.counters["lost_packets"], 200)
    }
}
