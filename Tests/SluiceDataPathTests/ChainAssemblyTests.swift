import CXDP
import SluiceModules
import XCTest

@testable import SluiceDataPath

/// The RX path's multi-buffer chain assembly over synthetic descriptors on
/// an in-memory RX ring laid out as the kernel's (libxdp's own peek,
/// cancel and release run on it): chains cut by a peek, chains longer than
/// a batch, and chains too long to take.
final class ChainAssemblyTests: XCTestCase {
    /// An RX ring in memory: the producer side is the test, as the kernel's.
    final class SyntheticRXRing {
        let size: UInt32 = 256
        let ring = UnsafeMutablePointer<xsk_ring_cons>.allocate(capacity: 1)
        private let producer = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        private let consumer = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        private let flags = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        private let descriptors: UnsafeMutablePointer<xdp_desc>

        init() {
            descriptors = .allocate(capacity: Int(size))
            producer.initialize(to: 0); consumer.initialize(to: 0); flags.initialize(to: 0)
            ring.initialize(to: xsk_ring_cons())
            ring.pointee.mask = size - 1
            ring.pointee.size = size
            ring.pointee.producer = producer
            ring.pointee.consumer = consumer
            ring.pointee.flags = flags
            ring.pointee.ring = UnsafeMutableRawPointer(descriptors)
        }

        deinit {
            ring.deallocate(); producer.deallocate(); consumer.deallocate(); flags.deallocate()
            descriptors.deallocate()
        }

        /// Posts frames at addresses 4096·k: (length, more frames of this packet follow).
        func post(_ frames: [(length: UInt32, continues: Bool)], firstFrame: Int) {
            for (offset, frame) in frames.enumerated() {
                let slot = Int((producer.pointee &+ UInt32(offset)) & (size - 1))
                descriptors[slot] = xdp_desc(
                    addr: UInt64(firstFrame + offset) * 4096, len: frame.length,
                    options: frame.continues ? XSKSocket.packetContinues : 0)
            }
            producer.pointee &+= UInt32(frames.count)
        }

        /// Entries the consumer has released.
        var released: UInt32 { consumer.pointee }
    }

    let ring = SyntheticRXRing()
    var assembler: ChainAssembler!
    var processor: BatchProcessor!
    let umem = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)

    func prepare(batchSize: Int) {
        assembler = ChainAssembler(batchSize: batchSize)
        processor = BatchProcessor(
            modules: [], umem: umem, capacity: batchSize, segmentCapacity: batchSize + PacketDescriptor.maximumSegments)
    }

    override func tearDown() {
        assembler?.deallocate()
        umem.deallocate()
    }

    /// Peeks a batch as the RX thread does and assembles it.
    func receive(batchSize: Int) -> ChainAssembler.Result {
        var index: UInt32 = 0
        let peeked = Int(xsk_ring_cons__peek(ring.ring, UInt32(batchSize), &index))
        return assembler.assemble(ring.ring, ringIndex: index, peeked: peeked, queue: 3, into: processor)
    }

    func segments(of packet: Int) -> [UInt64] {
        let first = Int(processor.firstSegment[packet])
        return (0..<processor.descriptors[packet].segmentCount).map { processor.segments[first + $0].address / 4096 }
    }

    func testSingleFramesAndAChainBecomeOnePacketEach() {
        prepare(batchSize: 64)
        ring.post([(60, false), (3840, true), (3840, true), (1320, false), (100, false)], firstFrame: 0)
        let result = receive(batchSize: 64)
        XCTAssertEqual(result, .init(packets: 3, bytes: 60 + 9000 + 100, chains: 1, invalid: 0, refused: 0))
        XCTAssertEqual(ring.released, 5)
        XCTAssertFalse(processor.descriptors[0].isMultiBuffer)
        XCTAssertEqual(processor.descriptors[1].length, 9000)
        XCTAssertEqual(processor.descriptors[1].address, 4096)
        XCTAssertEqual(processor.descriptors[1].queue, 3)
        XCTAssertEqual(processor.descriptors[1].segmentCount, 3)
        XCTAssertEqual(segments(of: 1), [1, 2, 3])
        XCTAssertEqual(processor.descriptors[2].address, 4 * 4096)
        XCTAssertEqual(processor.descriptors[2].length, 100)
    }

    /// The kernel posts a chain whole, but a peek of a batch can cut it:
    /// the cut-off part stays in the ring and comes back whole next time.
    func testAChainCutByThePeekIsTakenWholeByTheNext() {
        prepare(batchSize: 3)
        ring.post([(60, false), (3840, true), (3840, true), (1320, false)], firstFrame: 0)
        XCTAssertEqual(receive(batchSize: 3), .init(packets: 1, bytes: 60, chains: 0, invalid: 0, refused: 0))
        XCTAssertEqual(ring.released, 1, "only the whole packet is released")
        XCTAssertEqual(receive(batchSize: 3), .init(packets: 1, bytes: 9000, chains: 1, invalid: 0, refused: 0))
        XCTAssertEqual(segments(of: 0), [1, 2, 3])
        XCTAssertEqual(ring.released, 4)
    }

    /// A chain the producer has not finished posting is not taken at all.
    func testAPartlyPostedChainWaitsForItsEnd() {
        prepare(batchSize: 8)
        ring.post([(3840, true), (3840, true)], firstFrame: 0)
        XCTAssertEqual(receive(batchSize: 8), .init())
        XCTAssertEqual(ring.released, 0)
        ring.post([(1320, false), (64, false)], firstFrame: 2)
        XCTAssertEqual(receive(batchSize: 8), .init(packets: 2, bytes: 9000 + 64, chains: 1, invalid: 0, refused: 0))
        XCTAssertEqual(segments(of: 0), [0, 1, 2])
        XCTAssertEqual(ring.released, 4)
    }

    /// A chain longer than the batch (batch size 2, a 6-frame packet) is
    /// peeked to its end rather than never taken.
    func testAChainLongerThanTheBatchIsTakenWhole() {
        prepare(batchSize: 2)
        ring.post(Array(repeating: (1792, true), count: 5) + [(40, false), (60, false)], firstFrame: 10)
        // The batch has room for the frame after the chain too.
        XCTAssertEqual(receive(batchSize: 2), .init(packets: 2, bytes: 5 * 1792 + 40 + 60, chains: 1, invalid: 0, refused: 0))
        XCTAssertEqual(segments(of: 0), Array(10...15))
        XCTAssertEqual(processor.descriptors[1].address, 16 * 4096)
        XCTAssertEqual(ring.released, 7)
    }

    /// A chain past the limit is refused: counted once, every one of its
    /// frames handed back exactly once (across batches), the packets after
    /// it received.
    func testAChainTooLongIsRefusedAndEveryFrameRecycledOnce() {
        prepare(batchSize: 64)
        let frames = PacketDescriptor.maximumSegments + 6
        ring.post(Array(repeating: (1000, true), count: frames - 1) + [(10, false), (60, false)], firstFrame: 0)
        var refused: [UInt64] = []
        var total = ChainAssembler.Result()
        for _ in 0..<3 {
            let result = receive(batchSize: 64)
            refused += (0..<result.refused).map { assembler.refused[$0] / 4096 }
            total.packets += result.packets; total.invalid += result.invalid; total.chains += result.chains
        }
        XCTAssertEqual(total.invalid, 1)
        XCTAssertEqual(total.chains, 0)
        XCTAssertEqual(total.packets, 1, "the frame after the refused chain")
        XCTAssertEqual(refused, (0..<UInt64(frames)).map { $0 })
        XCTAssertEqual(ring.released, UInt32(frames + 1))
        XCTAssertFalse(assembler.discarding)
    }
}
