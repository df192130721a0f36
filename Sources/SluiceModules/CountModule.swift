import Atomics
import SluiceProtocol

/// Per-flow packet and byte counters (flow = IP version + 5-tuple) in an
/// open-addressing table allocated once at construction. A flow that finds
/// no free slot within ``probeLimit`` slots of its hash is counted as
/// overflow; nothing allocates per packet. Frames already decided by an
/// earlier module are left alone; malformed and non-IP frames are counted
/// separately and never enter the table.
///
/// Where the XDP program stores the driver's RX metadata and the driver
/// hashed the frame's addresses and ports (an L4 RSS hash), that hash picks
/// the flow's slot instead of hashing the headers again (counted as
/// `driver_hash_packets`); it only picks where the probe starts: the key is
/// still compared word by word, so flows whose hashes collide stay apart.
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

        static let capacityOption = ModuleOption(
            "capacity", .integer, range: capacityRange, default: "65536", "Flow table slots, a power of two.")
        static let topOption = ModuleOption(
            "top", .integer, range: topRange, default: "10", "Rows in the top-flows table (by packets).")

        init(_ reader: OptionReader) throws {
            self.init()
            if let capacity = try reader.integer(Self.capacityOption) {
                guard capacity & (capacity - 1) == 0 else {
                    throw reader.error("capacity", "\(capacity) is not a power of two")
                }
                self.capacity = Int(capacity)
            }
            if let top = try reader.integer(Self.topOption) { self.top = Int(top) }
        }
    }

    static let descriptor = ModuleDescriptor(
        kind: .count, summary: "Counts packets and bytes per flow (IP version and 5-tuple); keeps the top flows.",
        options: [Options.capacityOption, Options.topOption], readsRxMetadata: true, parse: Options.init,
        make: CountModule.init(options:))

    public let kind = ModuleKind.count.rawValue
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
    /// The slot of every flow in insertion order, so that readers visit the
    /// occupied slots only instead of the whole table. The writer fills entry
    /// `n` and then publishes `n + 1` in ``insertedCount`` with release
    /// ordering; the table is insert-only, so an entry never changes once
    /// published and there are never more than `capacity` of them.
    private let insertedSlots: UnsafeMutablePointer<UInt32>
    private let insertedCount: UnsafeMutablePointer<AtomicWord>

    private enum Counter: Int, CaseIterable {
        case packets, bytes, overflowPackets, overflowBytes, nonIP, malformed, driverHashPackets
        var name: String {
            switch self {
            case .driverHashPackets: return "driver_hash_packets"
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
        insertedSlots = .allocate(capacity: options.capacity)
        insertedSlots.initialize(repeating: 0, count: options.capacity)
        insertedCount = .allocate(capacity: 1)
        insertedCount.initialize(to: .init(0))
    }

    deinit {
        slots.deinitialize(count: options.capacity * Self.wordsPerSlot)
        slots.deallocate()
        insertedSlots.deallocate()
        insertedCount.deinitialize(count: 1)
        insertedCount.deallocate()
        counters.deallocate()
    }

    /// The driver's RSS hash, where the XDP program stores it.
    public var wantsRxMetadata: Bool { true }

    public func process(_ batch: PacketBatch) {
        var packets: UInt64 = 0, bytes: UInt64 = 0, overflowPackets: UInt64 = 0, overflowBytes: UInt64 = 0
        var nonIP: UInt64 = 0, malformed: UInt64 = 0, driverHashed: UInt64 = 0
        let metadata = batch.metadata
        // The table in a struct of locals, once per batch: read through
        // `self` in the per-packet path it cost ~11 more instructions per
        // packet (callgrind, inline `count`).
        let table = Table(slots: slots, mask: mask, probeLimit: probeLimit, insertedSlots: insertedSlots,
                          insertedCount: insertedCount)
        for index in 0..<batch.count {
            let descriptor = batch.descriptors[index]
            guard descriptor.verdict == .pass else { continue }
            if descriptor.malformed {
                malformed &+= 1
                continue
            }
            let length = UInt64(descriptor.length)
            var driverHash = -1
            if let metadata, metadata[index].hasL4Hash { driverHash = Int(truncatingIfNeeded: metadata[index].hash) }
            let outcome = table.record(UnsafePointer(batch.headers + index), length: length, driverHash: driverHash)
            if outcome != .notIP && driverHash >= 0 { driverHashed &+= 1 }
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
        counters.add(Counter.driverHashPackets.rawValue, driverHashed)
    }

    fileprivate enum Outcome {
        case notIP, overflow, counted
    }

    /// What `record` needs of the module.
    fileprivate struct Table {
        let slots: UnsafeMutablePointer<AtomicWord>
        let mask: Int
        let probeLimit: Int
        let insertedSlots: UnsafeMutablePointer<UInt32>
        let insertedCount: UnsafeMutablePointer<AtomicWord>

        /// `driverHash`: the driver's L4 RSS hash (0...UInt32.max), or -1 to
        /// hash the headers.
        @inline(__always)
        func record(_ headers: UnsafePointer<PacketHeaders>, length: UInt64, driverHash: Int) -> Outcome {
            let version = headers.pointee.ipVersion
            guard version == 4 || version == 6 else { return .notIP }
            let key = CountModule.packedKey(headers.pointee)
            let sourceHigh = headers.pointee.sourceAddressHigh, sourceLow = headers.pointee.sourceAddressLow
            let destinationHigh = headers.pointee.destinationAddressHigh
            let destinationLow = headers.pointee.destinationAddressLow
            var slotIndex: Int
            if driverHash >= 0 {
                slotIndex = driverHash & mask
            } else {
                var hash = sourceHigh ^ rotate(sourceLow, 17) ^ rotate(destinationHigh, 31) ^ rotate(destinationLow, 47) ^ key
                hash = (hash ^ (hash >> 29)) &* 0xBF58_476D_1CE4_E5B9
                hash ^= hash >> 32
                slotIndex = Int(truncatingIfNeeded: hash) & mask
            }
            var probes = probeLimit
            while probes > 0 {
                let slot = slots + slotIndex &* CountModule.wordsPerSlot
                let stored = CountModule.load(slot, Word.key)
                // The whole key in one test (an empty slot never matches: a key has bit 0 set).
                let difference = (stored ^ key) | (CountModule.load(slot, Word.sourceHigh) ^ sourceHigh)
                    | (CountModule.load(slot, Word.sourceLow) ^ sourceLow)
                    | (CountModule.load(slot, Word.destinationHigh) ^ destinationHigh)
                    | (CountModule.load(slot, Word.destinationLow) ^ destinationLow)
                if difference == 0 {
                    CountModule.store(slot, Word.packets, CountModule.load(slot, Word.packets) &+ 1)
                    CountModule.store(slot, Word.bytes, CountModule.load(slot, Word.bytes) &+ length)
                    return .counted
                }
                if stored == 0 {
                    CountModule.store(slot, Word.sourceHigh, sourceHigh)
                    CountModule.store(slot, Word.sourceLow, sourceLow)
                    CountModule.store(slot, Word.destinationHigh, destinationHigh)
                    CountModule.store(slot, Word.destinationLow, destinationLow)
                    CountModule.store(slot, Word.packets, 1)
                    CountModule.store(slot, Word.bytes, length)
                    AtomicWord.atomicStore(key, at: slot + Word.key, ordering: .releasing)
                    // Only this thread writes the count, so a relaxed load reads its own last store.
                    let inserted = AtomicWord.atomicLoad(at: insertedCount, ordering: .relaxed)
                    insertedSlots[Int(truncatingIfNeeded: inserted)] = UInt32(truncatingIfNeeded: slotIndex)
                    AtomicWord.atomicStore(inserted &+ 1, at: insertedCount, ordering: .releasing)
                    return .counted
                }
                slotIndex = (slotIndex &+ 1) & mask
                probes &-= 1
            }
            return .overflow
        }

        @inline(__always)
        private func rotate(_ value: UInt64, _ count: UInt64) -> UInt64 {
            (value << count) | (value >> (64 - count))
        }
    }

    @inline(__always)
    fileprivate static func load(_ slot: UnsafeMutablePointer<AtomicWord>, _ word: Int) -> UInt64 {
        AtomicWord.atomicLoad(at: slot + word, ordering: .relaxed)
    }

    @inline(__always)
    fileprivate static func store(_ slot: UnsafeMutablePointer<AtomicWord>, _ word: Int, _ value: UInt64) {
        AtomicWord.atomicStore(value, at: slot + word, ordering: .relaxed)
    }

    @inline(__always)
    private func load(_ slot: UnsafeMutablePointer<AtomicWord>, _ word: Int) -> UInt64 {
        Self.load(slot, word)
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

        init(_ flow: RawFlow) {
            let key = flow.key
            ipVersion = key.ipVersion
            ipProtocol = UInt8(truncatingIfNeeded: key.packed >> 24)
            source = IPAddressText.format(version: key.ipVersion, high: key.sourceHigh, low: key.sourceLow)
            destination = IPAddressText.format(
                version: key.ipVersion, high: key.destinationHigh, low: key.destinationLow)
            sourcePort = UInt16(truncatingIfNeeded: key.packed >> 48)
            destinationPort = UInt16(truncatingIfNeeded: key.packed >> 32)
            packets = flow.packets
            bytes = flow.bytes
        }

        /// A row of the snapshot's top-flows table.
        var row: [String: String] {
            [
                "src": source, "dst": destination, "proto": String(ipProtocol),
                "sport": String(sourcePort), "dport": String(destinationPort),
                "packets": String(packets), "bytes": String(bytes),
            ]
        }
    }

    /// A flow's identity as the table stores it (the packed key word and the
    /// four address words): merging instances hashes 40 bytes of integers,
    /// not two formatted addresses per flow.
    struct FlowKey: Hashable {
        var packed: UInt64
        var sourceHigh: UInt64, sourceLow: UInt64
        var destinationHigh: UInt64, destinationLow: UInt64

        var ipVersion: UInt8 { UInt8(truncatingIfNeeded: packed >> 16) }
    }

    /// A flow with its counters, before any text is made of it.
    struct RawFlow {
        var key: FlowKey
        var packets: UInt64
        var bytes: UInt64

        /// The top-flows order: more packets, then more bytes, then (so that
        /// equal counters always come out in the same order) the higher
        /// source address, source port, destination address, destination
        /// port, protocol and IP version, compared as numbers.
        @inline(__always)
        func ranks(above other: RawFlow) -> Bool {
            if packets != other.packets { return packets > other.packets }
            if bytes != other.bytes { return bytes > other.bytes }
            return key.tieBreak > other.key.tieBreak
        }
    }

    /// Flows published so far (acquire: their slots' words are visible).
    private var publishedFlowCount: Int {
        // Never more than capacity; the bound keeps a reader inside the index list regardless.
        min(Int(truncatingIfNeeded: AtomicWord.atomicLoad(at: insertedCount, ordering: .acquiring)), options.capacity)
    }

    /// Calls `body` with every flow in the table, in insertion order, visiting
    /// only the slots the index list names. Counters are read racily but
    /// safely while the data path runs: a flow's may be one batch behind its
    /// neighbours'.
    @inline(__always)
    private func forEachFlow(_ body: (RawFlow) -> Void) {
        for position in 0..<publishedFlowCount {
            body(rawFlow(at: slots + Int(insertedSlots[position]) * Self.wordsPerSlot))
        }
    }

    @inline(__always)
    private func rawFlow(at slot: UnsafeMutablePointer<AtomicWord>) -> RawFlow {
        RawFlow(
            key: FlowKey(
                packed: load(slot, Word.key), sourceHigh: load(slot, Word.sourceHigh),
                sourceLow: load(slot, Word.sourceLow), destinationHigh: load(slot, Word.destinationHigh),
                destinationLow: load(slot, Word.destinationLow)),
            packets: load(slot, Word.packets), bytes: load(slot, Word.bytes))
    }

    /// Every flow in the table, in insertion order; see ``forEachFlow(_:)``.
    public func flows() -> [Flow] {
        var result: [Flow] = []
        result.reserveCapacity(publishedFlowCount)
        forEachFlow { result.append(Flow($0)) }
        return result
    }

    /// Every flow found by reading all `capacity` slots, in slot order: what
    /// ``flows()`` must agree with, for tests.
    func flowsByScanningTable() -> [Flow] {
        var result: [Flow] = []
        for slotIndex in 0..<options.capacity {
            let slot = slots + slotIndex * Self.wordsPerSlot
            guard AtomicWord.atomicLoad(at: slot + Word.key, ordering: .acquiring) != 0 else { continue }
            result.append(Flow(rawFlow(at: slot)))
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
    ///
    /// The work is proportional to the flows, not the table: only published
    /// slots are read, the top N are selected without sorting every flow,
    /// and only those N are turned into text.
    public static func snapshot(merging modules: [CountModule]) -> ModuleSnapshot {
        var values: [String: UInt64] = ["capacity": 0]
        for counter in Counter.allCases { values[counter.name] = 0 }
        var top = 0
        for module in modules {
            values["capacity"]! += UInt64(module.options.capacity)
            for counter in Counter.allCases {
                values[counter.name]! &+= module.counters.load(counter.rawValue)
            }
            top = max(top, module.options.top)
        }
        var selection = TopFlows(limit: top)
        var flowCount = 0
        // Flows in one table are distinct, unless a flow's packets came both
        // with and without the driver's hash (its RSS settings changed under
        // the pipeline): then it may sit in two slots, and is merged below.
        if modules.count == 1 && modules[0].counters.load(Counter.driverHashPackets.rawValue) == 0 {
            modules[0].forEachFlow { flow in
                flowCount += 1
                selection.offer(flow)
            }
        } else {
            var merged: [FlowKey: Totals] = [:]
            merged.reserveCapacity(modules.reduce(0) { $0 + $1.publishedFlowCount })
            for module in modules {
                module.forEachFlow { flow in merged[flow.key, default: Totals()].add(flow) }
            }
            flowCount = merged.count
            for (key, totals) in merged {
                selection.offer(RawFlow(key: key, packets: totals.packets, bytes: totals.bytes))
            }
        }
        values["flows"] = UInt64(flowCount)
        return ModuleSnapshot(kind: ModuleKind.count.rawValue, counters: values, rows: selection.ranked().map { Flow($0).row })
    }

    /// One flow's counters summed over instances.
    private struct Totals {
        var packets: UInt64 = 0
        var bytes: UInt64 = 0

        mutating func add(_ flow: RawFlow) {
            packets &+= flow.packets
            bytes &+= flow.bytes
        }
    }

    /// The `limit` best flows offered (by ``RawFlow/ranks(above:)``), kept
    /// in a binary heap whose root is the weakest of them: O(flows × log
    /// limit) rather than sorting every flow.
    struct TopFlows {
        let limit: Int
        private var heap: [RawFlow] = []

        init(limit: Int) {
            self.limit = max(0, limit)
            heap.reserveCapacity(self.limit)
        }

        mutating func offer(_ flow: RawFlow) {
            if heap.count < limit {
                heap.append(flow)
                siftUp(heap.count - 1)
            } else if limit > 0 && flow.ranks(above: heap[0]) {
                heap[0] = flow
                siftDown(0)
            }
        }

        /// The selected flows, best first.
        func ranked() -> [RawFlow] {
            heap.sorted { $0.ranks(above: $1) }
        }

        private mutating func siftUp(_ start: Int) {
            var child = start
            while child > 0 {
                let parent = (child - 1) / 2
                guard heap[parent].ranks(above: heap[child]) else { return }
                heap.swapAt(parent, child)
                child = parent
            }
        }

        private mutating func siftDown(_ start: Int) {
            var parent = start
            while true {
                var weakest = parent
                let left = 2 * parent + 1, right = left + 1
                if left < heap.count && heap[weakest].ranks(above: heap[left]) { weakest = left }
                if right < heap.count && heap[weakest].ranks(above: heap[right]) { weakest = right }
                guard weakest != parent else { return }
                heap.swapAt(parent, weakest)
                parent = weakest
            }
        }
    }
}

extension CountModule.FlowKey {
    /// Source address, source port, destination address, then destination
    /// port, protocol and version (one word) — a total order on keys.
    fileprivate var tieBreak: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) {
        (sourceHigh, sourceLow, packed >> 48, destinationHigh, destinationLow, (packed >> 16) & 0xFFFF_FFFF)
    }
}
