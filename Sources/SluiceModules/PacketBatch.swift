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

/// One received frame as the data path hands it on: where it sits in the
/// UMEM, how long it is and which queue it came from. 16 bytes, no references.
public struct PacketDescriptor: Sendable {
    /// Offset of the frame's first byte in the UMEM (`xdp_desc.addr`).
    public var address: UInt64
    public var length: UInt32
    public var queue: UInt16
    public var verdict: Verdict
    /// Set when the header parser found the frame truncated or inconsistent.
    public var malformed: Bool

    public init(address: UInt64, length: UInt32, queue: UInt16) {
        self.address = address
        self.length = length
        self.queue = queue
        self.verdict = .pass
        self.malformed = false
    }
}

/// A batch of frames in one UMEM, with their parsed headers, handed to each
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

    @inlinable
    public init(
        umem: UnsafeMutableRawPointer, descriptors: UnsafeMutablePointer<PacketDescriptor>,
        headers: UnsafeMutablePointer<PacketHeaders>, count: Int, metadata: UnsafeMutablePointer<RxMetadata>? = nil
    ) {
        self.umem = umem
        self.descriptors = descriptors
        self.headers = headers
        self.count = count
        self.metadata = metadata
    }

    /// The driver's RX metadata of the frame, ``RxMetadata/none`` when
    /// there is none.
    @inlinable
    public func rxMetadata(at index: Int) -> RxMetadata {
        metadata?[index] ?? .none
    }

    /// The frame's bytes, in place in the UMEM.
    @inlinable
    public func bytes(at index: Int) -> UnsafeMutableRawBufferPointer {
        let descriptor = descriptors[index]
        return UnsafeMutableRawBufferPointer(
            start: umem + Int(truncatingIfNeeded: descriptor.address), count: Int(descriptor.length))
    }
}

/// A packet-processing stage. `process` runs on a data-path thread once per
/// batch (one existential call per batch, never per packet) and must not
/// allocate, lock, or retain anything per packet. `snapshot` and `flush`
/// run on control threads and may read counters the data path writes.
public protocol PacketModule: AnyObject {
    /// The module's kind, as in config: `count`, `filter`, `pcap`, `reflect`.
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
