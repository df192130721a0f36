@_exported import SluiceProtocol

/// What a module decides for a packet. Modules see every packet of a batch
/// and leave alone those already decided by an earlier module.
public enum Verdict: UInt8, Sendable {
    /// Not decided yet: the next module sees it; after the last module the
    /// frame is returned to the fill ring (counted as passed).
    case pass = 0
    /// Counted as dropped by the module that said so; the frame is recycled.
    case drop = 1
    /// Send the frame back out of the socket it came from (AF_XDP TX ring);
    /// the frame stays in the UMEM until the completion ring returns it.
    case transmit = 2
}

/// One received packet as the data path hands it on: where it sits in the
/// UMEM, how long it is and which queue it came from. 16 bytes, no references.
///
/// A multi-buffer (jumbo) packet arrives as a chain of frames: its descriptor
/// is the first frame's, with `length` the whole packet's, and
/// ``PacketBatch/segmentCount(at:)`` / ``PacketBatch/segment(_:of:)`` reach
/// every frame of it. A single-frame packet is one segment.
public struct PacketDescriptor: Sendable {
    /// Offset of the packet's first byte in the UMEM (`xdp_desc.addr`).
    public var address: UInt64
    /// The whole packet's length, every segment included.
    public var length: UInt32
    public var queue: UInt16
    public var verdict: Verdict
    /// Bit 0: malformed; bits 1...7: how many frames follow the first one
    /// (0 for a single-frame packet). One byte, so the descriptor stays 16.
    @usableFromInline var flags: UInt8

    @inlinable
    public init(address: UInt64, length: UInt32, queue: UInt16) {
        self.address = address
        self.length = length
        self.queue = queue
        self.verdict = .pass
        self.flags = 0
    }

    /// The most frames one packet may span; a longer chain is invalid.
    public static let maximumSegments = 64

    /// A multi-buffer packet's descriptor: `length` is the whole packet's,
    /// `address` its first frame's. `segments` is 2...``maximumSegments``.
    @inlinable
    public init(address: UInt64, length: UInt32, queue: UInt16, segments: Int) {
        self.init(address: address, length: length, queue: queue)
        flags = UInt8(truncatingIfNeeded: max(0, min(segments, Self.maximumSegments) - 1) << 1)
    }

    /// Set when the header parser found the frame truncated or inconsistent.
    @inlinable
    public var malformed: Bool {
        get { flags & 1 != 0 }
        set { flags = (flags & ~1) | (newValue ? 1 : 0) }
    }

    /// Whether the packet spans more than one frame (a multi-buffer chain).
    @inlinable
    public var isMultiBuffer: Bool { flags > 1 }

    /// How many frames the packet spans (1 for a single-frame packet).
    @inlinable
    public var segmentCount: Int { Int(flags >> 1) + 1 }
}

/// One frame of a multi-buffer packet: where it sits in the UMEM and how
/// many of the packet's bytes it holds.
public struct PacketSegment: Sendable {
    public var address: UInt64
    public var length: UInt32

    @inlinable
    public init(address: UInt64, length: UInt32) {
        self.address = address
        self.length = length
    }
}

/// Where a batch's multi-buffer packets keep their segments: every segment
/// of every chained packet of the batch, in order (the first frame too), and
/// for each packet the index of its first segment there. Present only when
/// the batch holds a chain, so a batch of single-frame packets costs nothing.
public struct PacketChains {
    public let segments: UnsafeMutablePointer<PacketSegment>
    /// Indexed like the descriptors; meaningful only for multi-buffer packets.
    public let firstSegment: UnsafeMutablePointer<Int32>

    @inlinable
    public init(segments: UnsafeMutablePointer<PacketSegment>, firstSegment: UnsafeMutablePointer<Int32>) {
        self.segments = segments
        self.firstSegment = firstSegment
    }
}

/// A batch of packets in one UMEM, with their parsed headers, handed to each
/// module in turn. The storage belongs to the data path and is reused for
/// every batch: modules must not keep pointers past `process`.
public struct PacketBatch {
    /// Base address of the UMEM the descriptors point into.
    public let umem: UnsafeMutableRawPointer
    public let descriptors: UnsafeMutablePointer<PacketDescriptor>
    public let headers: UnsafeMutablePointer<PacketHeaders>
    public let count: Int
    /// The driver's RX metadata, parallel to `descriptors`; nil unless the
    /// XDP program stores it and a module of the chain asks for it
    /// (``PacketModule/wantsRxMetadata``). Read it through ``rxMetadata(at:)``.
    public let metadata: UnsafeMutablePointer<RxMetadata>?
    /// The segments of the batch's multi-buffer packets; nil when it has none.
    public let chains: PacketChains?
    /// Where the header parser gathers the first bytes of a chained packet
    /// whose headers cross its first frame (``HeaderParser/gatherLength`` bytes).
    public let gatherArea: UnsafeMutableRawPointer?

    @inlinable
    public init(
        umem: UnsafeMutableRawPointer, descriptors: UnsafeMutablePointer<PacketDescriptor>,
        headers: UnsafeMutablePointer<PacketHeaders>, count: Int, metadata: UnsafeMutablePointer<RxMetadata>? = nil,
        chains: PacketChains? = nil, gatherArea: UnsafeMutableRawPointer? = nil
    ) {
        self.umem = umem
        self.descriptors = descriptors
        self.headers = headers
        self.count = count
        self.metadata = metadata
        self.chains = chains
        self.gatherArea = gatherArea
    }

    /// The driver's RX metadata of the packet, ``RxMetadata/none`` when
    /// there is none.
    @inlinable
    public func rxMetadata(at index: Int) -> RxMetadata {
        metadata?[index] ?? .none
    }

    /// The packet's bytes in place in the UMEM: the whole frame, or for a
    /// multi-buffer packet its first segment (see ``segment(_:of:)``).
    @inlinable
    public func bytes(at index: Int) -> UnsafeMutableRawBufferPointer {
        let descriptor = descriptors[index]
        guard descriptor.isMultiBuffer else {
            return UnsafeMutableRawBufferPointer(
                start: umem + Int(truncatingIfNeeded: descriptor.address), count: Int(descriptor.length))
        }
        return segment(0, of: index)
    }

    /// How many frames packet `index` spans.
    @inlinable
    public func segmentCount(at index: Int) -> Int {
        // A chain without its segments (a module rewrote the flags) is read
        // as its first frame alone rather than out of bounds.
        chains == nil ? 1 : descriptors[index].segmentCount
    }

    /// Segment `segment` (0..<segmentCount) of packet `index`, in place.
    @inlinable
    public func segment(_ segment: Int, of index: Int) -> UnsafeMutableRawBufferPointer {
        let descriptor = descriptors[index]
        guard let chains, descriptor.isMultiBuffer else {
            return UnsafeMutableRawBufferPointer(
                start: umem + Int(truncatingIfNeeded: descriptor.address), count: Int(descriptor.length))
        }
        let entry = chains.segments[Int(chains.firstSegment[index]) + segment]
        return UnsafeMutableRawBufferPointer(
            start: umem + Int(truncatingIfNeeded: entry.address), count: Int(entry.length))
    }
}

/// A packet-processing stage. `process` runs on a data-path thread once per
/// batch (one existential call per batch, never per packet) and must not
/// allocate, lock, or retain anything per packet. `snapshot` and `flush`
/// run on control threads and may read counters the data path writes.
public protocol PacketModule: AnyObject {
    /// The module's kind, as in config: `count`, `filter`, `pcap`, `reflect`, `latency`.
    var kind: String { get }
    func process(_ batch: PacketBatch)
    /// Counters and state for `stats.get` / `pipeline.status`, as JSON-ready values.
    func snapshot() -> ModuleSnapshot
    /// Called once when the pipeline stops, after the last batch.
    func flush()
    /// Whether the module reads ``PacketBatch/metadata``: the data path
    /// reads the driver's RX metadata out of the UMEM only for chains with
    /// such a module (it costs a cache line per frame).
    var wantsRxMetadata: Bool { get }
}

extension PacketModule {
    public func flush() {}
    public var wantsRxMetadata: Bool { false }
}
