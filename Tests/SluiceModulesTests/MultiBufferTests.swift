import Foundation
import SluiceModules
import SluiceTestSupport
import XCTest

/// Multi-buffer packets as modules see them: one descriptor with the whole
/// length, the bytes in frames scattered over the UMEM. The header parser
/// reads across a frame boundary only when it must, count and filter count
/// the whole length, pcap writes every byte, reflect leaves chains alone.
final class MultiBufferTests: XCTestCase {
    /// A UMEM of 2048-byte frames holding chained packets (each segment in
    /// a frame of its own, in reverse frame order, so no chain is contiguous).
    final class ChainedUMEM {
        static let frameSize = 2048
        let umem = UnsafeMutableRawPointer.allocate(byteCount: 64 * 2048, alignment: 4096)
        let descriptors = UnsafeMutablePointer<PacketDescriptor>.allocate(capacity: 8)
        let headers = UnsafeMutablePointer<PacketHeaders>.allocate(capacity: 8)
        let segments = UnsafeMutablePointer<PacketSegment>.allocate(capacity: 64)
        let firstSegment = UnsafeMutablePointer<Int32>.allocate(capacity: 8)
        let gatherArea = UnsafeMutableRawPointer.allocate(byteCount: HeaderParser.gatherLength, alignment: 16)
        private var nextFrame = 63
        private var segmentCount = 0
        private(set) var count = 0

        init() { headers.initialize(repeating: PacketHeaders(), count: 8) }

        deinit {
            umem.deallocate(); descriptors.deallocate(); headers.deallocate()
            segments.deallocate(); firstSegment.deallocate(); gatherArea.deallocate()
        }

        /// Adds `frame` cut into segments of `cuts` bytes (the last takes the rest).
        func add(_ frame: [UInt8], cuts: [Int]) {
            var pieces: [ArraySlice<UInt8>] = []
            var rest = frame[...]
            for cut in cuts { pieces.append(rest.prefix(cut)); rest = rest.dropFirst(cut) }
            if !rest.isEmpty { pieces.append(rest) }
            let first = segmentCount
            for piece in pieces {
                precondition(piece.count <= Self.frameSize)
                let address = nextFrame * Self.frameSize + 256
                nextFrame -= 1
                piece.withUnsafeBytes { (umem + address).copyMemory(from: $0.baseAddress!, byteCount: piece.count) }
                segments[segmentCount] = PacketSegment(address: UInt64(address), length: UInt32(piece.count))
                segmentCount += 1
            }
            firstSegment[count] = Int32(first)
            descriptors[count] = pieces.count == 1
                ? PacketDescriptor(address: segments[first].address, length: UInt32(frame.count), queue: 0)
                : PacketDescriptor(address: segments[first].address, length: UInt32(frame.count), queue: 0, segments: pieces.count)
            count += 1
        }

        func batch() -> PacketBatch {
            PacketBatch(
                umem: umem, descriptors: descriptors, headers: headers, count: count,
                chains: PacketChains(segments: segments, firstSegment: firstSegment), gatherArea: gatherArea)
        }
    }

    /// A 9000-byte UDP frame with a recognisable payload.
    func jumboFrame(ipv6: Bool = false) -> [UInt8] {
        var builder = FrameBuilder(
            network: ipv6 ? FrameBuilder.ipv6() : FrameBuilder.ipv4(), transport: .udp(source: 4000, destination: 5000))
        builder.payload = (0..<(9000 - 14 - (ipv6 ? 40 : 20) - 8)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let frame = builder.build()
        precondition(frame.count == 9000)
        return frame
    }

    func testTheDescriptorStaysSixteenBytesAndCarriesTheChain() {
        XCTAssertEqual(MemoryLayout<PacketDescriptor>.stride, 16)
        var descriptor = PacketDescriptor(address: 0, length: 9000, queue: 1, segments: 5)
        XCTAssertTrue(descriptor.isMultiBuffer)
        XCTAssertEqual(descriptor.segmentCount, 5)
        descriptor.malformed = true
        XCTAssertTrue(descriptor.malformed)
        XCTAssertEqual(descriptor.segmentCount, 5, "malformed does not touch the segment count")
        descriptor.malformed = false
        XCTAssertFalse(descriptor.malformed)
        XCTAssertFalse(PacketDescriptor(address: 0, length: 60, queue: 0).isMultiBuffer)
        XCTAssertEqual(PacketDescriptor(address: 0, length: 60, queue: 0).segmentCount, 1)
    }

    /// Headers in the first frame (in place) or cut by it (gathered): the
    /// same result as the contiguous frame, lengths checked against the
    /// whole packet, not the first frame.
    func testTheParserReadsAcrossAFrameBoundaryOnlyWhenItMust() {
        for ipv6 in [false, true] {
            let frame = jumboFrame(ipv6: ipv6)
            let whole = frame.withUnsafeBytes { HeaderParser.parse(frame: $0.baseAddress!, length: frame.count) }
            XCTAssertEqual(whole.malformation, .none)
            let umem = ChainedUMEM()
            umem.add(frame, cuts: [1792, 1792, 1792, 1792])  // as copy mode fills 2048-byte frames
            umem.add(frame, cuts: [20, 3, 1000, 1792, 1792, 1792, 1792])  // the IP header cut twice
            umem.add(frame, cuts: [14 + (ipv6 ? 40 : 20) + 4, 1792, 1792, 1792, 1792])  // the UDP header cut
            let batch = umem.batch()
            XCTAssertEqual(HeaderParser.parse(batch), 0)
            for index in 0..<3 {
                XCTAssertEqual(batch.headers[index], whole, "ipv6 \(ipv6) packet \(index)")
                XCTAssertFalse(batch.descriptors[index].malformed)
                XCTAssertEqual(batch.descriptors[index].segmentCount, [5, 8, 6][index])
            }
            XCTAssertEqual(Int(whole.l3End), 9000)
            XCTAssertEqual(whole.destinationPort, 5000)
        }
    }

    /// A chain shorter than its IP header says is truncated, as a frame is.
    func testAChainShorterThanItsHeadersSayIsMalformed() {
        let frame = Array(jumboFrame().prefix(5000))
        let umem = ChainedUMEM()
        umem.add(frame, cuts: [1792, 1792])
        let batch = umem.batch()
        XCTAssertEqual(HeaderParser.parse(batch), 1)
        XCTAssertEqual(batch.headers[0].malformation, .truncatedIPv4)
    }

    func testCountAndFilterCountTheWholePacketAndReflectLeavesChainsAlone() throws {
        let umem = ChainedUMEM()
        umem.add(jumboFrame(), cuts: [1792, 1792, 1792, 1792])
        let small = FrameBuilder(network: FrameBuilder.ipv6(), transport: .udp(source: 1, destination: 2)).build()
        umem.add(small, cuts: [])  // not a chain
        let batch = umem.batch()
        HeaderParser.parse(batch)
        let count = CountModule(options: .init())
        let reflect = ReflectModule()
        let filter = try XCTUnwrap(try ModuleKind.filter.descriptor.make([
            "rules": .array([.table(["action": .string("pass"), "proto": .string("udp"), "dport": .integer(5000)])]),
            "default": .string("pass"),
        ]) as? FilterModule)
        count.process(batch)
        filter.process(batch)
        reflect.process(batch)
        XCTAssertEqual(filter.matched(rule: 0).packets, 1, "the jumbo frame matches on headers read in its first frame")
        XCTAssertEqual(filter.matched(rule: 0).bytes, 9000)
        XCTAssertEqual(filter.matched(rule: 1).bytes, UInt64(small.count))
        XCTAssertEqual(count.snapshot().counters["packets"], 2)
        XCTAssertEqual(count.snapshot().counters["bytes"], UInt64(9000 + small.count))
        XCTAssertEqual(reflect.snapshot().counters["multi_buffer_skipped"], 1)
        XCTAssertEqual(batch.descriptors[0].verdict, .pass, "a chain is not sent back")
        XCTAssertEqual(batch.segmentCount(at: 0), 5)
        XCTAssertEqual(batch.bytes(at: 0).count, 1792, "bytes(at:) is the first frame of a chain")
    }

    func testPcapWritesEveryByteOfAChain() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("sluicejumbo"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("jumbo.pcap").path
        let pcap = try PcapModule(options: .init(path: path))
        let frames = [jumboFrame(), jumboFrame(ipv6: true)]
        let umem = ChainedUMEM()
        umem.add(frames[0], cuts: [1792, 1792, 1792, 1792])
        umem.add(frames[1], cuts: [30, 1762, 1792, 1792, 1792])
        let batch = umem.batch()
        HeaderParser.parse(batch)
        pcap.process(batch)
        pcap.flush()
        let packets = try tcpdumpRead(path)
        XCTAssertEqual(packets.map(\.length), [9000, 9000], "captured length = wire length")
        XCTAssertEqual(packets.map(\.bytes), frames)
    }
}
