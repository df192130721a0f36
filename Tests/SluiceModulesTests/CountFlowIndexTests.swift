import CSluiceShims
import Dispatch
@testable import SluiceModules
import SluiceTestSupport
import XCTest

/// A flow written straight into a batch as parsed headers, so that tests can
/// inject thousands of distinct flows without building frames.
struct InjectedFlow: Hashable {
    var version: UInt8
    var proto: UInt8
    var sourceHigh: UInt64, sourceLow: UInt64
    var destinationHigh: UInt64, destinationLow: UInt64
    var sourcePort: UInt16, destinationPort: UInt16

    var headers: PacketHeaders {
        var headers = PacketHeaders()
        headers.ipVersion = version
        headers.ipProtocol = proto
        headers.sourceAddressHigh = sourceHigh
        headers.sourceAddressLow = sourceLow
        headers.destinationAddressHigh = destinationHigh
        headers.destinationAddressLow = destinationLow
        headers.sourcePort = sourcePort
        headers.destinationPort = destinationPort
        return headers
    }

    /// The same flow as ``CountModule/flows()`` spells it, with `packets` and `bytes`.
    func flow(packets: UInt64, bytes: UInt64) -> CountModule.Flow {
        CountModule.Flow(
            CountModule.RawFlow(
                key: .init(
                    packed: UInt64(sourcePort) << 48 | UInt64(destinationPort) << 32 | UInt64(proto) << 24
                        | UInt64(version) << 16 | 1,
                    sourceHigh: sourceHigh, sourceLow: sourceLow,
                    destinationHigh: destinationHigh, destinationLow: destinationLow),
                packets: packets, bytes: bytes))
    }

    /// Draws from small pools of addresses and ports so that flows share
    /// parts of their keys (and equal counters tie on more than one field).
    static func random(using generator: inout SplitMix64) -> InjectedFlow {
        let version: UInt8 = Bool.random(using: &generator) ? 4 : 6
        func address() -> (UInt64, UInt64) {
            let pick = UInt64.random(in: 0..<12, using: &generator)
            if version == 4 { return ((0x0A00_0000 | pick) << 32, 0) }
            return (0xFD00_0000_0000_0000 | pick << 8, pick == 0 ? 1 : UInt64.random(in: 0...3, using: &generator))
        }
        let source = address(), destination = address()
        return InjectedFlow(
            version: version, proto: [6, 17, 132].randomElement(using: &generator)!,
            sourceHigh: source.0, sourceLow: source.1, destinationHigh: destination.0, destinationLow: destination.1,
            sourcePort: UInt16.random(in: 1000...1015, using: &generator),
            destinationPort: UInt16.random(in: 1...4, using: &generator))
    }

    static func distinct(_ count: Int, using generator: inout SplitMix64) -> [InjectedFlow] {
        var seen = Set<InjectedFlow>(), result: [InjectedFlow] = []
        while result.count < count {
            // The pools hold some 27,000 IPv4 keys and more IPv6 ones: enough for these tests.
            let flow = random(using: &generator)
            if seen.insert(flow).inserted { result.append(flow) }
        }
        return result
    }
}

/// Feeds packets to a count module through one reused 64-entry batch, in order.
final class HeaderInjector {
    let umem = TestUMEM(frames: 64)

    func send(_ packets: [(flow: InjectedFlow, length: UInt32)], to module: CountModule) {
        var start = 0
        while start < packets.count {
            let chunk = packets[start..<min(start + umem.frames, packets.count)]
            for (index, packet) in chunk.enumerated() {
                umem.headers[index] = packet.flow.headers
                umem.descriptors[index] = PacketDescriptor(address: 0, length: packet.length, queue: 0)
            }
            module.process(PacketBatch(umem: umem.umem, descriptors: umem.descriptors, headers: umem.headers, count: chunk.count))
            start += chunk.count
        }
    }
}

/// Sorts flows by every field, to compare lists whose order is not the point.
func canonical(_ flows: [CountModule.Flow]) -> [CountModule.Flow] {
    flows.sorted { "\($0)" < "\($1)" }
}

final class CountFlowIndexTests: XCTestCase {
    /// Random packets for `flows`: each flow 1–3 packets of 64 or 128 bytes
    /// (few distinct totals, so equal counters are common), shuffled.
    func randomPackets(_ flows: [InjectedFlow], using generator: inout SplitMix64) -> [(flow: InjectedFlow, length: UInt32)] {
        var packets: [(flow: InjectedFlow, length: UInt32)] = []
        for flow in flows {
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                packets.append((flow, [64, 128].randomElement(using: &generator)!))
            }
        }
        packets.shuffle(using: &generator)
        return packets
    }

    /// flows() reads only the slots in the index list; it must find exactly
    /// what a scan of every slot finds, with exact counters, in the order the
    /// flows first arrived — from a few flows to a full table and overflow.
    func testFlowsEqualAScanOfEverySlot() {
        let cases: [(capacity: Int, flows: [Int])] = [(64, [0, 1, 3, 32, 64, 100]), (1024, [5, 100, 700, 1024, 1600])]
        for (capacity, flowCounts) in cases {
            for flowCount in flowCounts {
                var generator = SplitMix64(seed: UInt64(capacity * 10_000 + flowCount))
                let context = "capacity \(capacity), \(flowCount) flows"
                let count = CountModule(options: .init(capacity: capacity, top: 10))
                let injected = InjectedFlow.distinct(flowCount, using: &generator)
                let packets = randomPackets(injected, using: &generator)
                HeaderInjector().send(packets, to: count)

                let listed = count.flows()
                XCTAssertEqual(canonical(listed), canonical(count.flowsByScanningTable()), context)
                XCTAssertLessThanOrEqual(listed.count, capacity, context)
                if capacity <= count.probeLimit {
                    XCTAssertEqual(listed.count, min(flowCount, capacity), "probing covers the whole table: \(context)")
                } else if flowCount <= capacity / 8 {
                    XCTAssertEqual(listed.count, flowCount, context)
                }

                // Each flow either has a slot from its first packet on or never gets one.
                var totals: [InjectedFlow: (packets: UInt64, bytes: UInt64)] = [:]
                var arrival: [InjectedFlow] = []
                for packet in packets {
                    if totals[packet.flow] == nil { arrival.append(packet.flow) }
                    totals[packet.flow, default: (0, 0)].packets += 1
                    totals[packet.flow, default: (0, 0)].bytes += UInt64(packet.length)
                }
                let expected = arrival.map { $0.flow(packets: totals[$0]!.packets, bytes: totals[$0]!.bytes) }
                let listedSet = Set(listed.map { "\($0)" })
                XCTAssertEqual(listed, expected.filter { listedSet.contains("\($0)") }, "insertion order and exact counters: \(context)")

                let snapshot = count.snapshot()
                let countedPackets = listed.reduce(0) { $0 + $1.packets }
                XCTAssertEqual(snapshot.counters["flows"], UInt64(listed.count), context)
                XCTAssertEqual(snapshot.counters["packets"], countedPackets, context)
                XCTAssertEqual(
                    snapshot.counters["overflow_packets"], UInt64(packets.count) - countedPackets,
                    "every packet of a flow without a slot is overflow: \(context)")
                if flowCount > capacity { XCTAssertGreaterThan(snapshot.counters["overflow_packets"] ?? 0, 0, context) }
            }
        }
    }

    /// The reference: merge each instance's full-table scan by the flow's
    /// text, sort every flow, keep the first N.
    func referenceSnapshot(_ modules: [CountModule]) -> (flows: Int, rows: [[String: String]]) {
        var merged: [String: CountModule.Flow] = [:]
        for module in modules {
            for flow in module.flowsByScanningTable() {
                let key = "\(flow.ipVersion) \(flow.ipProtocol) \(flow.source) \(flow.sourcePort) \(flow.destination) \(flow.destinationPort)"
                if var known = merged[key] {
                    known.packets += flow.packets
                    known.bytes += flow.bytes
                    merged[key] = known
                } else {
                    merged[key] = flow
                }
            }
        }
        func order(_ flow: CountModule.Flow) -> (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) {
            let source = IPAddressText.parse(flow.source)!, destination = IPAddressText.parse(flow.destination)!
            let rest = UInt64(flow.destinationPort) << 16 | UInt64(flow.ipProtocol) << 8 | UInt64(flow.ipVersion)
            return (flow.packets, flow.bytes, source.high, source.low, UInt64(flow.sourcePort), destination.high, destination.low, rest)
        }
        let sorted = merged.values.sorted { a, b in
            let (x, y) = (order(a), order(b))
            return (x.0, x.1, x.2, x.3) != (y.0, y.1, y.2, y.3) ? (x.0, x.1, x.2, x.3) > (y.0, y.1, y.2, y.3) : (x.4, x.5, x.6, x.7) > (y.4, y.5, y.6, y.7)
        }
        let top = modules.map(\.options.top).max() ?? 0
        let rows = sorted.prefix(top).map {
            [
                "src": $0.source, "dst": $0.destination, "proto": String($0.ipProtocol), "sport": String($0.sourcePort),
                "dport": String($0.destinationPort), "packets": String($0.packets), "bytes": String($0.bytes),
            ]
        }
        return (merged.count, rows)
    }

    /// One to three instances sharing flows, random counters with many
    /// ties, tables small enough to overflow: the snapshot equals the
    /// straightforward merge-sort-prefix.
    func testMergedSnapshotEqualsAFullSortReference() {
        for seed in UInt64(1)...40 {
            var generator = SplitMix64(seed: seed)
            let pool = InjectedFlow.distinct(Int.random(in: 1...300, using: &generator), using: &generator)
            let modules = (0..<Int.random(in: 1...3, using: &generator)).map { _ in
                CountModule(options: .init(
                    capacity: [16, 64, 256, 1024].randomElement(using: &generator)!,
                    top: [0, 1, 3, 10, 50, 1000].randomElement(using: &generator)!))
            }
            for module in modules {
                let subset = pool.filter { _ in Int.random(in: 0..<3, using: &generator) > 0 }
                HeaderInjector().send(randomPackets(subset, using: &generator), to: module)
            }
            let context = "seed \(seed), \(modules.count) instances, pool \(pool.count)"
            let snapshot = CountModule.snapshot(merging: modules)
            let reference = referenceSnapshot(modules)
            XCTAssertEqual(snapshot.counters["flows"], UInt64(reference.flows), context)
            XCTAssertEqual(snapshot.rows, reference.rows, context)
            XCTAssertEqual(snapshot.counters["capacity"], UInt64(modules.reduce(0) { $0 + $1.options.capacity }), context)
            for name in ["packets", "bytes", "overflow_packets", "overflow_bytes", "non_ip", "malformed"] {
                XCTAssertEqual(snapshot.counters[name], modules.reduce(0) { $0 + $1.snapshot().counters[name]! }, "\(name): \(context)")
            }
            let summed = modules.reduce(0) { $0 + $1.flowsByScanningTable().reduce(0) { $0 + $1.packets } }
            XCTAssertEqual(snapshot.counters["packets"], summed, context)
        }
    }

    /// Equal packets and bytes rank by the higher source address (as a
    /// number, so 10.0.0.10 comes before 10.0.0.9), then source port, then
    /// destination: the same rows in the same order on every call.
    func testEqualCountersRankByAddressThenPort() {
        let count = CountModule(options: .init(capacity: 64, top: 10))
        let frames = [
            udp4("10.0.0.9", "10.0.0.1", 7, 1), udp4("10.0.0.10", "10.0.0.1", 7, 1),
            udp4("10.0.0.9", "10.0.0.1", 8, 1), udp4("10.0.0.9", "10.0.0.2", 7, 1),
        ]
        _ = TestUMEM().run(frames, through: [count])
        let rows = count.snapshot().rows
        XCTAssertEqual(rows.map { "\($0["src"]!):\($0["sport"]!)>\($0["dst"]!)" }, [
            "10.0.0.10:7>10.0.0.1", "10.0.0.9:8>10.0.0.1", "10.0.0.9:7>10.0.0.2", "10.0.0.9:7>10.0.0.1",
        ])
        XCTAssertEqual(CountModule.snapshot(merging: [count, CountModule(options: .init(capacity: 16, top: 1))]).rows, rows)
    }

    /// Inserting new flows writes one index entry each into memory set aside
    /// at construction: tens of thousands of inserts leave malloc's figures alone.
    func testInsertingNewFlowsDoesNotAllocate() {
        let count = CountModule(options: .init(capacity: 1 << 16, top: 10))
        let umem = TestUMEM(frames: 64)
        let batch = PacketBatch(umem: umem.umem, descriptors: umem.descriptors, headers: umem.headers, count: 64)
        var next: UInt64 = 0
        func run(batches: Int) {
            for _ in 0..<batches {
                for index in 0..<64 {
                    umem.headers[index].ipVersion = 4
                    umem.headers[index].ipProtocol = 17
                    umem.headers[index].sourceAddressHigh = (0x0A00_0000 | next >> 16) << 32
                    umem.headers[index].sourcePort = UInt16(truncatingIfNeeded: next)
                    umem.descriptors[index] = PacketDescriptor(address: 0, length: 64, queue: 0)
                    next += 1
                }
                count.process(batch)
            }
        }
        run(batches: 10)
        let before = sluice_malloc_stats_now()
        run(batches: 700)
        let after = sluice_malloc_stats_now()
        XCTAssertEqual(after.in_use_bytes, before.in_use_bytes, "bytes in use by malloc changed")
        XCTAssertEqual(after.mmap_blocks, before.mmap_blocks, "mmap()ed blocks changed")
        let counters = count.snapshot().counters
        XCTAssertEqual(counters["packets"]! + counters["overflow_packets"]!, next)
        XCTAssertEqual(counters["flows"], counters["packets"], "every packet was a new flow")
        XCTAssertGreaterThan(counters["flows"]!, 40_000)
    }

    /// A reader running while the writer inserts and counts sees only whole
    /// flows: a published index entry never leads to a slot whose addresses
    /// are not written yet, the list only grows, an entry keeps its flow and
    /// its counters never go back.
    func testConcurrentReaderSeesOnlyCompleteFlows() {
        let flowCount = 4096, rounds = 32
        let count = CountModule(options: .init(capacity: 1 << 14, top: 10))
        // Flow n: 10.(n>>8).(n&255).1 port n → 172.16.(n>>8).(n&255), so a reader can tell a flow is whole.
        let flows = (0..<flowCount).map { n in
            InjectedFlow(
                version: 4, proto: 17, sourceHigh: UInt64(0x0A00_0001 | n << 8) << 32, sourceLow: 0,
                destinationHigh: UInt64(0xAC10_0000 | n) << 32, destinationLow: 0,
                sourcePort: UInt16(truncatingIfNeeded: n), destinationPort: 9)
        }
        let packets = Array(repeating: flows.map { (flow: $0, length: UInt32(64)) }, count: rounds).joined()
        let writer = DispatchGroup(), readerStarted = DispatchSemaphore(value: 0)
        // Unchecked on purpose: one writer thread and a concurrent reader is
        // what the flow index is built for, and what this test checks.
        nonisolated(unsafe) let written = count
        DispatchQueue.global().async(group: writer) {
            readerStarted.wait()
            HeaderInjector().send(Array(packets), to: written)
        }
        readerStarted.signal()
        var previous: [CountModule.Flow] = [], problems: [String] = [], reads = 0
        while problems.isEmpty {
            let finished = writer.wait(timeout: .now()) == .success
            let seen = count.flows()
            reads += 1
            if seen.count < previous.count { problems.append("the list shrank from \(previous.count) to \(seen.count)") }
            for (position, flow) in seen.enumerated() {
                let source = IPAddressText.parse(flow.source), destination = IPAddressText.parse(flow.destination)
                let n = Int(((source?.high ?? 0) >> 40) & 0xFFFF)
                if destination?.high != UInt64(0xAC10_0000 | n) << 32 || flow.sourcePort != UInt16(truncatingIfNeeded: n)
                    || flow.packets == 0
                {
                    problems.append("torn flow at \(position): \(flow)")
                }
                if position < previous.count {
                    let before = previous[position]
                    if (before.source, before.sourcePort) != (flow.source, flow.sourcePort) || before.packets > flow.packets {
                        problems.append("entry \(position) was \(before), now \(flow)")
                    }
                }
            }
            previous = seen
            if finished { break }
        }
        XCTAssertEqual(problems, [], "after \(reads) reads")
        XCTAssertEqual(canonical(count.flows()), canonical(count.flowsByScanningTable()))
        XCTAssertEqual(count.flows().count, flowCount)
        XCTAssertTrue(count.flows().allSatisfy { $0.packets == UInt64(rounds) })
    }
}
