#if canImport(Glibc)
import Glibc
#endif
import SluiceProtocol

/// Receive latency: for every UDP packet that carries a send stamp, the time
/// from the stamp to this module, in a histogram that is allocated once.
///
/// The stamp is what `sluice-gen --stamp` writes at the start of the UDP
/// payload: the 8 ASCII bytes `SLUICETS`, then the send time as
/// `CLOCK_MONOTONIC` nanoseconds, 64-bit little-endian. The generator and
/// the receiver must share that clock (one host, veth or a loopback cable);
/// across hosts the figures mean nothing. The receive time is read once per
/// batch, when the module gets it, so a packet's latency includes its wait in
/// the rings and the modules before this one in the chain.
///
/// The histogram has log2 buckets, each split into ``subBuckets`` linear
/// ones (values within 12.5 % of each other share a bucket); percentiles are
/// a bucket's upper bound, capped at the largest value seen. Unstamped
/// packets are counted and passed on; a stamp later than the receive time
/// (the sender's clock is not this one) is counted as `future`, never as a
/// latency.
public final class LatencyModule: PacketModule {
    public struct Options: Sendable, Equatable {
        public init() {}
    }

    static let descriptor = ModuleDescriptor(
        kind: .latency,
        summary: "Histogram of receive latency from the send stamp sluice-gen --stamp writes into UDP payloads.",
        options: [], parse: { _ in Options() }, make: LatencyModule.init(options:))

    public let kind = ModuleKind.latency.rawValue
    public let options: Options

    /// "SLUICETS" as the first 8 payload bytes, read little-endian.
    public static let stampMagic: UInt64 = {
        var value: UInt64 = 0
        for (index, byte) in "SLUICETS".utf8.enumerated() { value |= UInt64(byte) << (8 * UInt64(index)) }
        return value
    }()
    /// Bytes a stamp takes at the start of the UDP payload.
    public static let stampLength = 16

    /// Linear sub-buckets per power of two (a power of two itself).
    public static let subBuckets = 8
    static let subBucketBits = 3
    /// Enough for any 64-bit value: values below `subBuckets` map to
    /// themselves, then `subBuckets` per octave up to 2^64.
    public static let bucketCount = (64 - subBucketBits + 1) * subBuckets

    private enum Counter: Int, CaseIterable {
        case stamped, unstamped, future, sumNanoseconds, maxNanoseconds
        var name: String {
            switch self {
            case .stamped: return "stamped"
            case .unstamped: return "unstamped"
            case .future: return "future"
            case .sumNanoseconds: return "sum_ns"
            case .maxNanoseconds: return "max_ns"
            }
        }
    }
    private let counters = CounterArray(count: Counter.allCases.count)
    private let buckets = CounterArray(count: LatencyModule.bucketCount)

    public init(options: Options = Options()) {
        self.options = options
    }

    deinit {
        counters.deallocate()
        buckets.deallocate()
    }

    /// The bucket of a latency of `value` nanoseconds.
    @inline(__always)
    public static func bucket(of value: UInt64) -> Int {
        guard value >= UInt64(subBuckets) else { return Int(value) }
        let top = UInt64.bitWidth - 1 - value.leadingZeroBitCount
        let shift = top - subBucketBits
        let sub = Int(truncatingIfNeeded: value >> UInt64(shift)) & (subBuckets - 1)
        return (shift + 1) * subBuckets + sub
    }

    /// The smallest and largest value of bucket `index`.
    public static func range(ofBucket index: Int) -> ClosedRange<UInt64> {
        guard index >= subBuckets else { return UInt64(index)...UInt64(index) }
        let shift = UInt64(index / subBuckets - 1)
        let lower = UInt64(subBuckets + index % subBuckets) << shift
        return lower...(lower &+ ((1 << shift) - 1))
    }

    public func process(_ batch: PacketBatch) {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let received = UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
        var stamped: UInt64 = 0, unstamped: UInt64 = 0, future: UInt64 = 0, sum: UInt64 = 0
        var largest = counters.load(Counter.maxNanoseconds.rawValue)
        for index in 0..<batch.count {
            let descriptor = batch.descriptors[index]
            guard descriptor.verdict == .pass else { continue }
            let headers = UnsafePointer(batch.headers + index)
            // The parser checked the payload offset against the IP packet's end.
            let payload = Int(headers.pointee.payloadOffset)
            guard !descriptor.malformed, headers.pointee.ipProtocol == 17, headers.pointee.fragment == .none,
                payload > 0, payload + Self.stampLength <= Int(headers.pointee.l3End)
            else {
                unstamped &+= 1
                continue
            }
            // A chain's stamp must lie in its first frame, the bytes read here.
            if descriptor.isMultiBuffer, payload + Self.stampLength > batch.bytes(at: index).count {
                unstamped &+= 1
                continue
            }
            let frame = UnsafeRawPointer(batch.umem + Int(truncatingIfNeeded: descriptor.address))
            guard UInt64(littleEndian: frame.loadUnaligned(fromByteOffset: payload, as: UInt64.self)) == Self.stampMagic
            else {
                unstamped &+= 1
                continue
            }
            let sent = UInt64(littleEndian: frame.loadUnaligned(fromByteOffset: payload + 8, as: UInt64.self))
            guard sent <= received else {
                future &+= 1
                continue
            }
            let latency = received - sent
            stamped &+= 1
            sum &+= latency
            largest = max(largest, latency)
            buckets.add(Self.bucket(of: latency), 1)
        }
        counters.add(Counter.stamped.rawValue, stamped)
        counters.add(Counter.unstamped.rawValue, unstamped)
        counters.add(Counter.future.rawValue, future)
        counters.add(Counter.sumNanoseconds.rawValue, sum)
        counters.add(Counter.maxNanoseconds.rawValue, largest &- counters.load(Counter.maxNanoseconds.rawValue))
    }

    public func snapshot() -> ModuleSnapshot {
        Self.snapshot(merging: [self])
    }

    /// One snapshot of several instances (one per queue): counts and buckets
    /// added, the maximum the largest, percentiles of the merged histogram.
    public static func snapshot(merging modules: [LatencyModule]) -> ModuleSnapshot {
        var values: [String: UInt64] = [:]
        for counter in Counter.allCases where counter != .maxNanoseconds {
            values[counter.name] = modules.reduce(0) { $0 &+ $1.counters.load(counter.rawValue) }
        }
        let largest = modules.map { $0.counters.load(Counter.maxNanoseconds.rawValue) }.max() ?? 0
        values[Counter.maxNanoseconds.name] = largest
        var histogram = [UInt64](repeating: 0, count: bucketCount)
        for module in modules {
            for index in 0..<bucketCount { histogram[index] &+= module.buckets.load(index) }
        }
        let total = histogram.reduce(0, &+)
        for (name, fraction) in [("p50_ns", 0.50), ("p90_ns", 0.90), ("p99_ns", 0.99)] {
            values[name] = percentile(fraction, of: histogram, total: total, largest: largest)
        }
        let rows = histogram.indices.filter { histogram[$0] > 0 }.map { index -> [String: String] in
            let range = range(ofBucket: index)
            return ["from_ns": "\(range.lowerBound)", "to_ns": "\(range.upperBound)", "packets": "\(histogram[index])"]
        }
        return ModuleSnapshot(kind: ModuleKind.latency.rawValue, counters: values, rows: rows)
    }

    /// The upper bound of the bucket holding the `fraction` quantile (at
    /// most `largest`); 0 for an empty histogram.
    static func percentile(_ fraction: Double, of histogram: [UInt64], total: UInt64, largest: UInt64) -> UInt64 {
        guard total > 0 else { return 0 }
        let rank = max(1, UInt64((fraction * Double(total)).rounded(.up)))
        var seen: UInt64 = 0
        for index in histogram.indices {
            seen &+= histogram[index]
            if seen >= rank { return min(range(ofBucket: index).upperBound, largest) }
        }
        return largest
    }
}
