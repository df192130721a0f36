import Atomics

/// Per-flow packet and byte counters (flow = IP version + 5-tuple) in an
/// open-addressing table allocated once at construction. A flow that finds
/// no free slot within ``probeLimit`` slots of its hash is counted as
/// overflow; nothing allocates per packet. Frames already decided by an
/// earlier module are left alone; malformed and non-IP frames are counted
/// separately and never enter the table.
///
/// One instance belongs to one data-path thread (the writer); `snapshot()`
/// may run concurrently on a control thread. With one instance per queue,
/// ``snapshot(merging:)`` adds them up.
public final class CountModule: PacketModule {
    public struct Options: Sendable, Equatable {
        /// Table slots, a power of two.
        public var capacity: Int
        /// Rows in the snapshot's top-flows table (by packets).
        public var top: Int

        public init(capacity: Int = 65536, top: Int = 10) {
            self.capacity = capacity
            self.top = top
        }

        public static let capacityRange: ClosedRange<Int64> = 1...(1 << 24)
        public static let topRange: ClosedRange<Int64> = 0...1000

        init(kind: String, _ table: [String: ModuleOptionValue]) throws {
            let reader = try OptionReader(kind: kind, table, known: ["capacity", "top"])
            self.init()
            if let capacity = try reader.integer("capacity", in: Self.capacityRange) {
                guard capacity & (capacity - 1) == 0 else {
                    throw reader.error("capacity", "\(capacity) is not a power of two")
                }
                self.capacity = Int(capacity)
            }
            if let top = try reader.integer("top", in: Self.topRange) { self.top = Int(top) }
        }
    }

    public let kind = "count"
    public let options: Options
    /// Slots probed before a new flow counts as overflow: keeps the worst
    /// case per packet bounded when the table is (nearly) full.
    public let probeLimit: Int

    /// Slot layout, 8 words (one cache line) per flow. Word 0 is the packed
    /// key (ports, protocol, version, and bit 0 set), written last with
    /// release ordering so a reader that sees it non-zero sees the addresses.
    @usableFromInline static let wordsPerSlot = 8
    @usableFromInline enum Word {
        static let key = 0, packets = 1, bytes = 2
        static let sourceHigh = 3, sourceLow = 4, destinationHigh = 5, destinationLow = 6
    }
    private let slots: UnsafeMutablePointer<AtomicWord>
    private let mask: Int

    private enum Counter: Int, CaseIterable {
        case packets, bytes, overflowPackets, overflowBytes, nonIP, malformed
        var name: String {
            switch self {
            case .packets: return "packets"
            case .bytes: return "bytes"
            case .overflowPackets: return "overflow_packets"
            case .overflowBytes: return "overflow_bytes"
            case .nonIP: return "non_ip"
            case .malformed: return "malformed"
            }
        }
    }
    private let counters = CounterArray(count: Counter.allCases.count)

    public init(options: Options) {
        precondition(
            options.capacity > 0 && options.capacity & (options.capacity - 1) == 0,
            "CountModule capacity must be a power of two")
        self.options = options
        mask = options.capacity - 1
        probeLimit = min(options.capacity, 64)
        let words = options.capacity * Self.wordsPerSlot
        slots = .allocate(capacity: words)
        for index in 0..<words { (slots + index).initialize(to: .init(0)) }
    }

    deinit {
        slots.deinitialize(count: options.capacity * Self.wordsPerSlot)
        slots.deallocate()
        counters.deallocate()
    }

    public func process(_ batch: PacketBatch) {
        var packets: UInt64 = 0, bytes: UInt64 = 0, overflowPackets: UInt64 = 0, overflowBytes: UInt64 = 0
        var nonIP: UInt64 = 0, malformed: UInt64 = 0
        for index in 0..<batch.count {
            let descriptor = batch.descriptors[index]
            guard descriptor.verdict == .pass else { continue }
            if descriptor.malformed {
                malformed &+= 1
                continue
            }
            let length = UInt64(descriptor.length)
            let outcome = record(UnsafePointer(batch.headers + index), length: length)
            switch outcome {
            case .notIP: nonIP &+= 1
            case .overflow:
                overflowPackets &+= 1
                overflowBytes &+= length
            case .counted:
                packets &+= 1
                bytes &+= length
            }
        }
        // One store per counter per batch, not per packet.
        counters.add(Counter.packets.rawValue, packets)
        counters.add(Counter.bytes.rawValue, bytes)
        counters.add(Counter.overflowPackets.rawValue, overflowPackets)
        counters.add(Counter.overflowBytes.rawValue, overflowBytes)
        counters.add(Counter.nonIP.rawValue, nonIP)
        counters.add(Counter.malformed.rawValue, malformed)
    }

    private enum Outcome {
        case notIP, overflow, counted
    }

    @inline(__always)
    private func record(_ headers: UnsafePointer<PacketHeaders>, length: UInt64) -> Outcome {
        let version = headers.pointee.ipVersion
        guard version == 4 || version == 6 else { return .notIP }
        let key = Self.packedKey(headers.pointee)
        let sourceHigh = headers.pointee.sourceAddressHigh, sourceLow = headers.pointee.sourceAddressLow
        let destinationHigh = headers.pointee.destinationAddressHigh
        let destinationLow = headers.pointee.destinationAddressLow
        var hash = sourceHigh ^ rotate(sourceLow, 17) ^ rotate(destinationHigh, 31) ^ rotate(destinationLow, 47) ^ key
        hash = (hash ^ (hash >> 29)) &* 0xBF58_476D_1CE4_E5B9
        hash ^= hash >> 32
        var slotIndex = Int(truncatingIfNeeded: hash) & mask
        for _ in 0..<probeLimit {
            let slot = slots + slotIndex * Self.wordsPerSlot
            let stored = load(slot, Word.key)
            if stored == 0 {
                store(slot, Word.sourceHigh, sourceHigh)
                store(slot, Word.sourceLow, sourceLow)
                store(slot, Word.destinationHigh, destinationHigh)
                store(slot, Word.destinationLow, destinationLow)
                store(slot, Word.packets, 1)
                store(slot, Word.bytes, length)
                AtomicWord.atomicStore(key, at: slot + Word.key, ordering: .releasing)
                return .counted
            }
            if stored == key && load(slot, Word.sourceHigh) == sourceHigh && load(slot, Word.sourceLow) == sourceLow
                && load(slot, Word.destinationHigh) == destinationHigh
                && load(slot, Word.destinationLow) == destinationLow
            {
                store(slot, Word.packets, load(slot, Word.packets) &+ 1)
                store(slot, Word.bytes, load(slot, Word.bytes) &+ length)
                return .counted
            }
            slotIndex = (slotIndex &+ 1) & mask
        }
        return .overflow
    }

    @inline(__always)
    private func rotate(_ value: UInt64, _ count: UInt64) -> UInt64 {
        (value << count) | (value >> (64 - count))
    }

    @inline(__always)
    private func load(_ slot: UnsafeMutablePointer<AtomicWord>, _ word: Int) -> UInt64 {
        AtomicWord.atomicLoad(at: slot + word, ordering: .relaxed)
    }

    @inline(__always)
    private func store(_ slot: UnsafeMutablePointer<AtomicWord>, _ word: Int, _ value: UInt64) {
        AtomicWord.atomicStore(value, at: slot + word, ordering: .relaxed)
    }

    @inline(__always)
    static func packedKey(_ headers: PacketHeaders) -> UInt64 {
        UInt64(headers.sourcePort) << 48 | UInt64(headers.destinationPort) << 32
            | UInt64(headers.ipProtocol) << 24 | UInt64(headers.ipVersion) << 16 | 1
    }

    /// One flow as read at snapshot time.
    public struct Flow: Sendable, Equatable {
        public var ipVersion: UInt8
        public var ipProtocol: UInt8
        public var source: String
        public var destination: String
        public var sourcePort: UInt16
        public var destinationPort: UInt16
        public var packets: UInt64
        public var bytes: UInt64

        /// The flow without its counters, to add up the same flow seen by several instances.
        struct Key: Hashable {
            var ipVersion: UInt8, ipProtocol: UInt8, source: String, destination: String
            var sourcePort: UInt16, destinationPort: UInt16
        }

        var key: Key {
            Key(ipVersion: ipVersion, ipProtocol: ipProtocol, source: source, destination: destination,
                sourcePort: sourcePort, destinationPort: destinationPort)
        }
    }

    /// Every flow in the table, read racily but safely while the data path
    /// runs: a flow's counters may be one batch behind its neighbours'.
    public func flows() -> [Flow] {
        var result: [Flow] = []
        for slotIndex in 0..<options.capacity {
            let slot = slots + slotIndex * Self.wordsPerSlot
            let key = AtomicWord.atomicLoad(at: slot + Word.key, ordering: .acquiring)
            guard key != 0 else { continue }
            let version = UInt8(truncatingIfNeeded: key >> 16)
            result.append(
                Flow(
                    ipVersion: version, ipProtocol: UInt8(truncatingIfNeeded: key >> 24),
                    source: IPAddressText.format(
                        version: version, high: load(slot, Word.sourceHigh), low: load(slot, Word.sourceLow)),
                    destination: IPAddressText.format(
                        version: version, high: load(slot, Word.destinationHigh),
                        low: load(slot, Word.destinationLow)),
                    sourcePort: UInt16(truncatingIfNeeded: key >> 48),
                    destinationPort: UInt16(truncatingIfNeeded: key >> 32),
                    packets: load(slot, Word.packets), bytes: load(slot, Word.bytes)))
        }
        return result
    }

    /// Counters, and the top flows by packets as rows with the keys
    /// `src`, `dst`, `proto`, `sport`, `dport`, `packets`, `bytes`.
    public func snapshot() -> ModuleSnapshot {
        Self.snapshot(merging: [self])
    }

    /// One snapshot for several instances (one per data-path thread, e.g.
    /// one per queue): counters added up, and a flow seen by several
    /// instances counted once with its packets and bytes summed. The top-N
    /// size is the largest of the instances'.
    public static func snapshot(merging modules: [CountModule]) -> ModuleSnapshot {
        var values: [String: UInt64] = ["capacity": 0]
        for counter in Counter.allCases { values[counter.name] = 0 }
        var merged: [Flow.Key: Flow] = [:]
        var top = 0
        for module in modules {
            values["capacity"]! += UInt64(module.options.capacity)
            for counter in Counter.allCases {
                values[counter.name]! &+= module.counters.load(counter.rawValue)
            }
            top = max(top, module.options.top)
            for flow in module.flows() {
                if var known = merged[flow.key] {
                    known.packets &+= flow.packets
                    known.bytes &+= flow.bytes
                    merged[flow.key] = known
                } else {
                    merged[flow.key] = flow
                }
            }
        }
        values["flows"] = UInt64(merged.count)
        let rows = merged.values.sorted {
            ($0.packets, $0.bytes, $0.source, $0.sourcePort) > ($1.packets, $1.bytes, $1.source, $1.sourcePort)
        }.prefix(top).map {
            [
                "src": $0.source, "dst": $0.destination, "proto": String($0.ipProtocol),
                "sport": String($0.sourcePort), "dport": String($0.destinationPort),
                "packets": String($0.packets), "bytes": String($0.bytes),
            ]
        }
        return ModuleSnapshot(kind: "count", counters: values, rows: Array(rows))
    }
}
