import SluiceProtocol

/// Sends each IP packet back where it came from: swaps the Ethernet
/// source and destination, the IPv4/IPv6 addresses and the TCP/UDP ports in
/// place in the UMEM, and sets the verdict `.transmit`.
///
/// Checksums stay valid without being touched: the IPv4 header checksum and
/// the TCP/UDP checksum (over the pseudo-header) are one's-complement sums,
/// and a sum does not change when two of its 16-bit words trade places.
/// Malformed and non-IP frames, and frames an earlier module decided, are
/// left alone (counted as `skipped`).
public final class ReflectModule: PacketModule {
    public struct Options: Sendable, Equatable {
        public init() {}
    }

    static let descriptor = ModuleDescriptor(
        kind: .reflect, summary: "Sends each IP packet back where it came from (addresses and ports swapped).",
        options: [], parse: { _ in Options() }, make: ReflectModule.init(options:))

    public let kind = ModuleKind.reflect.rawValue
    public let options: Options
    private enum Counter: Int { case reflected, bytes, skipped, multiBufferSkipped }
    private let counters = CounterArray(count: 4)

    public init(options: Options = Options()) {
        self.options = options
    }

    deinit { counters.deallocate() }

    public func process(_ batch: PacketBatch) {
        var reflected: UInt64 = 0, bytes: UInt64 = 0, skipped: UInt64 = 0, multiBufferSkipped: UInt64 = 0
        for index in 0..<batch.count {
            let descriptor = batch.descriptors[index]
            guard descriptor.verdict == .pass else { continue }
            let headers = UnsafePointer(batch.headers + index)
            let version = headers.pointee.ipVersion
            guard !descriptor.malformed, version == 4 || version == 6 else {
                skipped &+= 1
                continue
            }
            // A multi-buffer packet is not sent back (its headers may cross
            // a frame, and the data path transmits single frames only): it
            // passes on, counted apart.
            guard !descriptor.isMultiBuffer else {
                multiBufferSkipped &+= 1
                continue
            }
            // The parser checked every offset used here against the length.
            let frame = batch.umem + Int(truncatingIfNeeded: descriptor.address)
            Self.swap(frame, 0, 6, count: 6)
            let l3 = Int(headers.pointee.l3Offset)
            if version == 4 {
                Self.swap(frame, l3 + 12, l3 + 16, count: 4)
            } else {
                Self.swap(frame, l3 + 8, l3 + 24, count: 16)
            }
            let proto = headers.pointee.ipProtocol
            if (proto == 6 || proto == 17) && headers.pointee.fragment != .later {
                let l4 = Int(headers.pointee.l4Offset)
                Self.swap(frame, l4, l4 + 2, count: 2)
            }
            batch.descriptors[index].verdict = .transmit
            reflected &+= 1
            bytes &+= UInt64(descriptor.length)
        }
        counters.add(Counter.reflected.rawValue, reflected)
        counters.add(Counter.bytes.rawValue, bytes)
        counters.add(Counter.skipped.rawValue, skipped)
        counters.add(Counter.multiBufferSkipped.rawValue, multiBufferSkipped)
    }

    /// Swaps two non-overlapping runs of `count` bytes.
    @inline(__always)
    static func swap(_ frame: UnsafeMutableRawPointer, _ first: Int, _ second: Int, count: Int) {
        for offset in 0..<count {
            let byte = frame.load(fromByteOffset: first + offset, as: UInt8.self)
            frame.storeBytes(
                of: frame.load(fromByteOffset: second + offset, as: UInt8.self), toByteOffset: first + offset,
                as: UInt8.self)
            frame.storeBytes(of: byte, toByteOffset: second + offset, as: UInt8.self)
        }
    }

    public func snapshot() -> ModuleSnapshot {
        ModuleSnapshot(
            kind: kind,
            counters: [
                "reflected": counters.load(Counter.reflected.rawValue),
                "bytes": counters.load(Counter.bytes.rawValue),
                "skipped": counters.load(Counter.skipped.rawValue),
                "multi_buffer_skipped": counters.load(Counter.multiBufferSkipped.rawValue),
            ])
    }
}
