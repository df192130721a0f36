import Foundation
@testable import SluiceModules
import SluiceTestSupport
import XCTest

/// The driver's RX metadata as modules use it, on made-up metadata: pcap's
/// pcapng blocks and stamps (tcpdump as the oracle), count's bucket choice,
/// and the reader of the struct the XDP program stores before a frame.
final class RxMetadataModuleTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("sluicerxmeta"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func udpFrame(_ index: Int, payload: Int) -> [UInt8] {
        var builder = FrameBuilder(network: FrameBuilder.ipv4(), transport: .udp(source: UInt16(2000 + index), destination: 53))
        builder.payload = [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: payload)
        return builder.build()
    }

    /// `umem`'s frames as one parsed batch carrying `metadata`.
    private func batch(_ umem: TestUMEM, metadata: UnsafeMutablePointer<RxMetadata>) -> PacketBatch {
        let parsed = umem.parsedBatch()
        return PacketBatch(
            umem: parsed.umem, descriptors: parsed.descriptors, headers: parsed.headers, count: parsed.count,
            metadata: metadata)
    }

    /// Seconds and nanoseconds of each packet as tcpdump prints them.
    private func tcpdumpStamps(_ path: String) throws -> [String] {
        let result = try runCommand(["tcpdump", "-r", path, "-nn", "-tt", "--time-stamp-precision=nano"], check: true)
        return result.stdout.split(separator: "\n").map { String($0.split(separator: " ")[0]) }
    }

    /// The block layout, byte by byte: section header, interface description
    /// with if_tsresol 9, then one enhanced packet block per frame with its
    /// bytes padded to 4 and the length repeated at the end.
    func testPcapngBlockLayout() throws {
        let path = directory.appendingPathComponent("layout.pcapng").path
        let pcap = try PcapModule(options: .init(path: path, snaplen: 1500))
        let frames = (0..<3).map { udpFrame($0, payload: 17 + $0) }  // lengths 59, 60, 61: every padding
        _ = TestUMEM().run(frames, through: [pcap])
        pcap.flush()
        let file = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        func word(_ offset: Int) -> UInt32 { file.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) } }
        XCTAssertEqual(word(0), 0x0A0D_0D0A, "section header block")
        XCTAssertEqual(word(4), 28)
        XCTAssertEqual(word(8), 0x1A2B_3C4D, "byte-order magic")
        XCTAssertEqual(word(24), 28, "trailing length")
        XCTAssertEqual(word(28), 1, "interface description block")
        XCTAssertEqual(word(32), 32)
        XCTAssertEqual(word(36) & 0xFFFF, 1, "LINKTYPE_ETHERNET")
        XCTAssertEqual(word(40), 1500, "snaplen")
        XCTAssertEqual(Array(file[44..<52]), [9, 0, 1, 0, 9, 0, 0, 0], "if_tsresol = 9 (nanoseconds), padded")
        XCTAssertEqual(word(52), 0, "opt_endofopt")
        XCTAssertEqual(word(56), 32)
        var offset = 60
        for frame in frames {
            let padded = (frame.count + 3) & ~3
            XCTAssertEqual(word(offset), 6, "enhanced packet block")
            XCTAssertEqual(Int(word(offset + 4)), 32 + padded)
            XCTAssertEqual(word(offset + 8), 0, "interface 0")
            XCTAssertEqual(Int(word(offset + 20)), frame.count, "captured")
            XCTAssertEqual(Int(word(offset + 24)), frame.count, "original length")
            XCTAssertEqual(Array(file[(offset + 28)..<(offset + 28 + frame.count)]), frame)
            XCTAssertTrue(file[(offset + 28 + frame.count)..<(offset + 28 + padded)].allSatisfy { $0 == 0 }, "zero padding")
            XCTAssertEqual(Int(word(offset + 28 + padded)), 32 + padded, "trailing length")
            offset += 32 + padded
        }
        XCTAssertEqual(offset, file.count, "nothing after the last block")
        XCTAssertEqual(try runCommand(["tcpdump", "-r", path, "-nn"], check: true).stdout.split(separator: "\n").count, 3)
    }

    /// `rx_hash = "toeplitz"`: a frame whose driver gave a hash carries it in
    /// an epb_hash option (code 3, length 5: algorithm 5 and the 4 hash
    /// bytes, 3 zero bytes of padding) and opt_endofopt, the block length
    /// counting both; a frame without a hash gets the plain block. Byte by
    /// byte for every padding of the frame bytes, and tcpdump reads it all.
    /// Off, the same metadata writes no option.
    func testPcapngHashOptionOnlyWhereTheDriverGaveAHash() throws {
        let frames = (0..<8).map { udpFrame($0, payload: 17 + $0 % 4) }  // lengths 59...62, twice: every padding
        let metadata = UnsafeMutablePointer<RxMetadata>.allocate(capacity: frames.count)
        defer { metadata.deallocate() }
        let hash = { (index: Int) in UInt32(0xA1B2_C3D4) &+ UInt32(index) }
        for index in frames.indices {
            // Hash valid on 0, 1, 2, 3 and 5; 4, 6 and 7 without (a hash value that is not valid is ignored).
            let valid = index < 4 || index == 5
            metadata[index] = RxMetadata(timestamp: 0, hash: hash(index), hashType: 0, flags: valid ? RxMetadata.hashValid : 0)
        }
        func capture(_ rxHash: PcapModule.Options.RxHash) throws -> [UInt8] {
            let path = directory.appendingPathComponent("hash-\(rxHash).pcapng").path
            let pcap = try PcapModule(options: .init(path: path, snaplen: 1500, rxHash: rxHash))
            let umem = TestUMEM()
            for frame in frames { umem.add(frame) }
            pcap.process(batch(umem, metadata: metadata))
            pcap.flush()
            XCTAssertEqual(try tcpdumpStamps(path).count, frames.count, "tcpdump reads every block")
            return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        }

        let file = try capture(.toeplitz)
        func word(_ offset: Int) -> UInt32 { file.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) } }
        var offset = 60  // after the section header and interface description blocks
        for (index, frame) in frames.enumerated() {
            let padded = (frame.count + 3) & ~3
            let hashed = metadata[index].hasHash
            let blockLength = 32 + padded + (hashed ? 16 : 0)
            XCTAssertEqual(word(offset), 6, "enhanced packet block \(index)")
            XCTAssertEqual(Int(word(offset + 4)), blockLength, "block \(index)")
            XCTAssertEqual(Int(word(offset + 20)), frame.count, "captured")
            XCTAssertEqual(Int(word(offset + 24)), frame.count, "original length")
            XCTAssertEqual(Array(file[(offset + 28)..<(offset + 28 + frame.count)]), frame)
            XCTAssertTrue(file[(offset + 28 + frame.count)..<(offset + 28 + padded)].allSatisfy { $0 == 0 }, "zero padding")
            if hashed {
                let option = offset + 28 + padded
                XCTAssertEqual(word(option) & 0xFFFF, 3, "epb_hash")
                XCTAssertEqual(word(option) >> 16, 5, "its length: the algorithm octet and 4 hash bytes")
                XCTAssertEqual(file[option + 4], 5, "algorithm 5: Toeplitz")
                XCTAssertEqual(
                    file.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: option + 5, as: UInt32.self) }, hash(index),
                    "the driver's hash, in the section's byte order")
                XCTAssertEqual(Array(file[(option + 9)..<(option + 12)]), [0, 0, 0], "the option padded to 32 bits")
                XCTAssertEqual(word(option + 12), 0, "opt_endofopt")
            }
            XCTAssertEqual(Int(word(offset + blockLength - 4)), blockLength, "trailing length \(index)")
            offset += blockLength
        }
        XCTAssertEqual(offset, file.count, "nothing after the last block")

        let plain = try capture(.off)
        XCTAssertEqual(plain.count, file.count - 5 * 16, "off: no block carries the option")
        // From the configuration: the key is read, and refused with classic pcap, which has no per-packet options.
        let path = ModuleOptionValue.string(directory.appendingPathComponent("x.pcapng").path)
        let configured = try ModuleKind.pcap.descriptor.make(["path": path, "rx_hash": .string("toeplitz")])
        XCTAssertEqual((configured as? PcapModule)?.options.rxHash, .toeplitz)
        XCTAssertThrowsError(
            try ModuleKind.pcap.descriptor.make(["path": path, "format": .string("pcap"), "rx_hash": .string("toeplitz")])
        ) { error in
            XCTAssertTrue("\(error)".contains("rx_hash"), "\(error)")
            XCTAssertTrue("\(error)".contains("needs format = \"pcapng\""), "\(error)")
        }
    }

    /// Frames with a driver timestamp carry it to the nanosecond; frames
    /// without carry the receive time (CLOCK_REALTIME, within the test's
    /// window). tcpdump reads both back.
    func testPcapngStampsWithTheDriverTimeWherePresent() throws {
        let path = directory.appendingPathComponent("stamps.pcapng").path
        let pcap = try PcapModule(options: .init(path: path))
        let umem = TestUMEM()
        for index in 0..<4 { umem.add(udpFrame(index, payload: 20)) }
        let metadata = UnsafeMutablePointer<RxMetadata>.allocate(capacity: 4)
        defer { metadata.deallocate() }
        let driverTime: UInt64 = 1_700_000_000_123_456_789
        for index in 0..<4 {
            metadata[index] = index % 2 == 0
                ? RxMetadata(timestamp: driverTime + UInt64(index), hash: 0, hashType: 0, flags: RxMetadata.timestampValid)
                : RxMetadata(timestamp: 42, hash: 7, hashType: 0, flags: RxMetadata.hashValid)  // stamp not valid: ignored
        }
        let before = Date().timeIntervalSince1970
        pcap.process(batch(umem, metadata: metadata))
        let after = Date().timeIntervalSince1970
        pcap.flush()
        let stamps = try tcpdumpStamps(path)
        XCTAssertEqual(stamps.count, 4)
        XCTAssertEqual(stamps[0], "1700000000.123456789")
        XCTAssertEqual(stamps[2], "1700000000.123456791")
        for index in [1, 3] {
            let seconds = try XCTUnwrap(Double(stamps[index]), stamps[index])
            XCTAssertGreaterThanOrEqual(seconds, before.rounded(.down), "receive time, not the invalid 42")
            XCTAssertLessThanOrEqual(seconds, after + 1)
        }
        XCTAssertEqual(pcap.snapshot().counters["driver_timestamps"], 2)
    }

    /// Classic pcap keeps working (`format = "pcap"`), with the driver's
    /// stamp cut to microseconds.
    func testClassicPcapTakesTheDriverTimeInMicroseconds() throws {
        let path = directory.appendingPathComponent("classic.pcap").path
        let pcap = try PcapModule(options: .init(path: path, format: .pcap))
        let umem = TestUMEM()
        umem.add(udpFrame(0, payload: 20))
        let metadata = UnsafeMutablePointer<RxMetadata>.allocate(capacity: 1)
        defer { metadata.deallocate() }
        metadata[0] = RxMetadata(timestamp: 1_700_000_000_123_456_789, hash: 0, hashType: 0, flags: RxMetadata.timestampValid)
        pcap.process(batch(umem, metadata: metadata))
        pcap.flush()
        let file = try Data(contentsOf: URL(fileURLWithPath: path))
        XCTAssertEqual(file.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }, 0xA1B2_C3D4)
        XCTAssertEqual(try tcpdumpStamps(path), ["1700000000.123456000"])
    }

    /// The driver's L4 hash picks the slot; the key still decides the flow:
    /// two flows given the same hash stay two flows, and packets with an L3
    /// hash (or none) are hashed in software as before.
    func testCountUsesTheDriverL4HashOnlyToPickTheSlot() throws {
        let count = CountModule(options: .init(capacity: 1024, top: 10))
        let umem = TestUMEM()
        for index in 0..<6 { umem.add(udpFrame(index % 3, payload: 10)) }  // flows 0, 1, 2, twice each
        let metadata = UnsafeMutablePointer<RxMetadata>.allocate(capacity: 6)
        defer { metadata.deallocate() }
        let l4 = RxMetadata.hashTypeL4 | 1 | 32  // XDP_RSS_TYPE_L4_IPV4_UDP
        for index in 0..<6 {
            switch index % 3 {
            case 0, 1: metadata[index] = RxMetadata(timestamp: 0, hash: 0xDEAD_BEEF, hashType: l4, flags: RxMetadata.hashValid)
            default: metadata[index] = RxMetadata(timestamp: 0, hash: 0x1234, hashType: 1, flags: RxMetadata.hashValid)
            }
        }
        count.process(batch(umem, metadata: metadata))
        let snapshot = count.snapshot()
        XCTAssertEqual(snapshot.counters["driver_hash_packets"], 4, "flows 0 and 1 came with an L4 hash")
        XCTAssertEqual(snapshot.counters["flows"], 3, "one hash, still two flows")
        XCTAssertEqual(snapshot.counters["packets"], 6)
        XCTAssertEqual(Set(count.flows().map(\.packets)), [2])
        XCTAssertEqual(count.flows().count, count.flowsByScanningTable().count)
        XCTAssertEqual(Set(count.flows().map(\.sourcePort)), [2000, 2001, 2002])
    }

    /// The XDP program's struct, read from before the frame: the magic and
    /// version gate it, and reading it clears the magic so that a later
    /// frame in the same chunk without metadata is not taken to carry it.
    func testTakeReadsTheStoredStructOnceAndTrustsOnlyTheMagic() {
        let chunk = UnsafeMutableRawPointer.allocate(byteCount: 512, alignment: 64)
        defer { chunk.deallocate() }
        chunk.initializeMemory(as: UInt8.self, repeating: 0, count: 512)
        let frame = chunk + 256
        let stored = frame - RxMetadata.storedSize
        stored.storeBytes(of: UInt32(0x534C_4D44), toByteOffset: 0, as: UInt32.self)
        stored.storeBytes(of: UInt16(1), toByteOffset: 4, as: UInt16.self)
        stored.storeBytes(of: UInt16(3), toByteOffset: 6, as: UInt16.self)
        stored.storeBytes(of: UInt64(123_456_789), toByteOffset: 8, as: UInt64.self)
        stored.storeBytes(of: UInt32(0xCAFE), toByteOffset: 16, as: UInt32.self)
        stored.storeBytes(of: UInt32(41), toByteOffset: 20, as: UInt32.self)
        let taken = RxMetadata.take(before: frame)
        XCTAssertEqual(taken, RxMetadata(timestamp: 123_456_789, hash: 0xCAFE, hashType: 41, flags: 3))
        XCTAssertTrue(taken.hasTimestamp && taken.hasHash && taken.hasL4Hash)
        XCTAssertEqual(RxMetadata.take(before: frame), .none, "taken once")
        stored.storeBytes(of: UInt32(0x534C_4D44), toByteOffset: 0, as: UInt32.self)
        stored.storeBytes(of: UInt16(2), toByteOffset: 4, as: UInt16.self)
        XCTAssertEqual(RxMetadata.take(before: frame), .none, "an unknown version is not trusted")
    }
}
