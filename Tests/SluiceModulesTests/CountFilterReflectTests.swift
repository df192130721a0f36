import Foundation
import SluiceModules
import SluiceProtocol
import SluiceTestSupport
import XCTest

func udp4(_ source: String, _ destination: String, _ sourcePort: UInt16, _ destinationPort: UInt16, payload: Int = 6) -> [UInt8] {
    var builder = FrameBuilder(network: FrameBuilder.ipv4(source, destination), transport: .udp(source: sourcePort, destination: destinationPort))
    builder.payload = [UInt8](repeating: 0x5A, count: payload)
    return builder.build()
}

func udp6(_ source: String, _ destination: String, _ sourcePort: UInt16, _ destinationPort: UInt16) -> [UInt8] {
    FrameBuilder(network: FrameBuilder.ipv6(source, destination), transport: .udp(source: sourcePort, destination: destinationPort)).build()
}

final class CountModuleTests: XCTestCase {
    func testExactPerFlowCountsAcrossBatches() throws {
        let count = CountModule(options: .init(capacity: 1024, top: 10))
        let flowA = udp4("10.0.0.1", "10.0.0.2", 1000, 2000, payload: 10)  // 52 bytes
        let flowB = udp4("10.0.0.1", "10.0.0.2", 1001, 2000, payload: 100)  // 142 bytes
        let flowC = udp6("fd00::1", "fd00::2", 1000, 2000)
        let flowD = FrameBuilder(network: FrameBuilder.ipv4("10.0.0.1", "10.0.0.2"), transport: .tcp(source: 1000, destination: 2000)).build()
        var frames: [[UInt8]] = []
        for index in 0..<300 {
            switch index % 10 {
            case 0, 1, 2, 3, 4: frames.append(flowA)
            case 5, 6, 7: frames.append(flowB)
            case 8: frames.append(flowC)
            default: frames.append(flowD)
            }
        }
        let verdicts = TestUMEM().run(frames, through: [count], batchSize: 17)
        XCTAssertEqual(verdicts.count, 300)
        XCTAssertTrue(verdicts.allSatisfy { $0 == .pass }, "count decides nothing")

        let snapshot = count.snapshot()
        XCTAssertEqual(snapshot.kind, "count")
        XCTAssertEqual(snapshot.counters["packets"], 300)
        XCTAssertEqual(snapshot.counters["bytes"], UInt64(150 * flowA.count + 90 * flowB.count + 30 * flowC.count + 30 * flowD.count))
        XCTAssertEqual(snapshot.counters["flows"], 4)
        XCTAssertEqual(snapshot.counters["overflow_packets"], 0)
        XCTAssertEqual(snapshot.rows.count, 4)
        XCTAssertEqual(snapshot.rows[0], [
            "src": "10.0.0.1", "dst": "10.0.0.2", "proto": "17", "sport": "1000", "dport": "2000",
            "packets": "150", "bytes": String(150 * flowA.count),
        ])
        XCTAssertEqual(snapshot.rows[1]["sport"], "1001")
        XCTAssertEqual(snapshot.rows[1]["packets"], "90")
        let v6 = try XCTUnwrap(snapshot.rows.first { $0["src"] == "fd00::1" })
        XCTAssertEqual(v6["packets"], "30")
        XCTAssertEqual(v6["dst"], "fd00::2")
        let tcp = try XCTUnwrap(snapshot.rows.first { $0["proto"] == "6" })
        XCTAssertEqual(tcp["packets"], "30")
        XCTAssertEqual(count.flows().count, 4)
    }

    func testTopNLimitsRows() {
        let count = CountModule(options: .init(capacity: 64, top: 2))
        var frames: [[UInt8]] = []
        for port in 1...5 { frames += Array(repeating: udp4("10.0.0.1", "10.0.0.2", UInt16(port), 9), count: port) }
        _ = TestUMEM().run(frames, through: [count])
        let snapshot = count.snapshot()
        XCTAssertEqual(snapshot.counters["flows"], 5)
        XCTAssertEqual(snapshot.rows.map { $0["sport"] }, ["5", "4"])
    }

    func testOverflowAtCapacity() {
        let count = CountModule(options: .init(capacity: 4, top: 10))
        var frames: [[UInt8]] = []
        for round in 0..<3 {
            for port in 1...6 { frames.append(udp4("192.168.1.1", "192.168.1.2", UInt16(port), 80, payload: round)) }
        }
        _ = TestUMEM().run(frames, through: [count], batchSize: 5)
        let snapshot = count.snapshot()
        XCTAssertEqual(snapshot.counters["flows"], 4)
        XCTAssertEqual(snapshot.counters["packets"], 12, "4 flows × 3 rounds")
        XCTAssertEqual(snapshot.counters["overflow_packets"], 6, "2 flows without a slot × 3 rounds")
        XCTAssertEqual(snapshot.rows.count, 4)
        XCTAssertTrue(snapshot.rows.allSatisfy { $0["packets"] == "3" })
    }

    /// One instance per queue, as the data path runs them: the merged
    /// snapshot sums each flow over the queues.
    func testSnapshotMergingSumsFlowsOverInstances() {
        let queue0 = CountModule(options: .init(capacity: 64, top: 10))
        let queue1 = CountModule(options: .init(capacity: 32, top: 10))
        let shared = udp4("10.0.0.1", "10.0.0.2", 5, 6)
        let only1 = udp6("fd00::1", "fd00::2", 7, 8)
        _ = TestUMEM().run(Array(repeating: shared, count: 7), through: [queue0])
        _ = TestUMEM().run(Array(repeating: shared, count: 5) + Array(repeating: only1, count: 2), through: [queue1])
        let merged = CountModule.snapshot(merging: [queue0, queue1])
        XCTAssertEqual(merged.counters["packets"], 14)
        XCTAssertEqual(merged.counters["flows"], 2)
        XCTAssertEqual(merged.counters["capacity"], 96)
        XCTAssertEqual(merged.counters["bytes"], UInt64(12 * shared.count + 2 * only1.count))
        XCTAssertEqual(merged.rows.map { [$0["src"], $0["packets"], $0["bytes"]] }, [
            ["10.0.0.1", "12", String(12 * shared.count)], ["fd00::1", "2", String(2 * only1.count)],
        ])
        XCTAssertEqual(queue0.snapshot().counters["packets"], 7)
    }

    func testMalformedNonIPAndDecidedFramesStayOutOfTheTable() {
        let count = CountModule(options: .init(capacity: 16, top: 10))
        let umem = TestUMEM()
        umem.add(udp4("10.0.0.1", "10.0.0.2", 1, 2))
        umem.add(Array(udp4("10.0.0.1", "10.0.0.2", 1, 2).prefix(40)))
        umem.add(FrameBuilder.macB + FrameBuilder.macA + [0x08, 0x06] + [UInt8](repeating: 0, count: 28))
        umem.add(udp4("10.0.0.1", "10.0.0.2", 1, 2))
        let batch = umem.parsedBatch()
        batch.descriptors[3].verdict = .drop
        count.process(batch)
        let snapshot = count.snapshot()
        XCTAssertEqual(snapshot.counters["packets"], 1)
        XCTAssertEqual(snapshot.counters["malformed"], 1)
        XCTAssertEqual(snapshot.counters["non_ip"], 1)
        XCTAssertEqual(snapshot.counters["flows"], 1)
    }
}

final class FilterModuleTests: XCTestCase {
    func makeFilter(_ rules: [[String: ModuleOptionValue]], default action: String = "pass") throws -> FilterModule {
        let module = try ModuleKind.filter.descriptor.make(["rules": .array(rules.map { .table($0) }), "default": .string(action)])
        return try XCTUnwrap(module as? FilterModule)
    }

    func testFirstMatchWinsAndCountsPerRule() throws {
        let filter = try makeFilter([
            ["action": .string("drop"), "proto": .string("udp"), "src": .string("10.0.0.0/8"), "dport": .integer(53)],
            ["action": .string("pass"), "dst": .string("10.9.9.9")],
            ["action": .string("drop"), "proto": .integer(17), "sport": .string("1000-1999"), "dport": .string("54")],
            ["action": .string("drop"), "src": .string("fd00::/16")],
        ])
        let frames: [[UInt8]] = [
            udp4("10.1.2.3", "10.9.9.9", 1500, 53),  // rule 0 (also 1 and 2)
            udp4("11.1.2.3", "10.9.9.9", 1500, 53),  // rule 1
            udp4("11.1.2.3", "10.8.8.8", 1500, 54),  // rule 2
            udp4("11.1.2.3", "10.8.8.8", 2000, 54),  // default
            udp6("fd00::5", "fe80::1", 1, 2),  // rule 3
            udp6("fe00::5", "fe80::1", 1, 2),  // default
            FrameBuilder(network: FrameBuilder.ipv4("10.1.1.1", "10.2.2.2"), transport: .icmp(type: 8)).build(),  // default: ports rules need ports
        ]
        let umem = TestUMEM()
        let verdicts = umem.run(frames, through: [filter])
        XCTAssertEqual(verdicts, [.drop, .pass, .drop, .pass, .drop, .pass, .pass])
        XCTAssertEqual(filter.matched(rule: 0).packets, 1)
        XCTAssertEqual(filter.matched(rule: 0).bytes, UInt64(frames[0].count))
        XCTAssertEqual(filter.matched(rule: 1).packets, 1)
        XCTAssertEqual(filter.matched(rule: 2).packets, 1)
        XCTAssertEqual(filter.matched(rule: 3).packets, 1)
        XCTAssertEqual(filter.matched(rule: 4).packets, 3, "default")
        let snapshot = filter.snapshot()
        XCTAssertEqual(snapshot.counters["dropped"], 3)
        XCTAssertEqual(snapshot.counters["default_packets"], 3)
        XCTAssertEqual(snapshot.rows.count, 5)
        XCTAssertEqual(snapshot.rows[0]["rule"], "drop ipv4 proto 17 src 10.0.0.0/8 dport 53")
        XCTAssertEqual(snapshot.rows[2]["rule"], "drop proto 17 sport 1000-1999 dport 54")
        XCTAssertEqual(snapshot.rows[3]["rule"], "drop ipv6 src fd00::/16")
    }

    func testSnapshotMergingAddsPerRuleCounters() throws {
        let rules: [[String: ModuleOptionValue]] = [["action": .string("drop"), "dport": .integer(53), "proto": .string("udp")]]
        let queue0 = try makeFilter(rules), queue1 = try makeFilter(rules)
        _ = TestUMEM().run([udp4("1.1.1.1", "2.2.2.2", 1, 53), udp4("1.1.1.1", "2.2.2.2", 1, 54)], through: [queue0])
        _ = TestUMEM().run([udp4("1.1.1.1", "2.2.2.2", 1, 53)], through: [queue1])
        let merged = FilterModule.snapshot(merging: [queue0, queue1])
        XCTAssertEqual(merged.counters["dropped"], 2)
        XCTAssertEqual(merged.counters["default_packets"], 1)
        XCTAssertEqual(merged.rows.map { $0["packets"] }, ["2", "1"])
        XCTAssertEqual(merged.rows.map { $0["index"] }, ["0", "default"])
    }

    func testDefaultDropAndMalformedFrames() throws {
        let filter = try makeFilter([["action": .string("pass"), "proto": .string("tcp")]], default: "drop")
        let tcp = FrameBuilder(network: FrameBuilder.ipv6(), transport: .tcp(source: 1, destination: 2)).build()
        let verdicts = TestUMEM().run([tcp, udp4("1.1.1.1", "2.2.2.2", 1, 2), Array(tcp.prefix(60))], through: [filter])
        XCTAssertEqual(verdicts, [.pass, .drop, .drop])
        XCTAssertEqual(filter.snapshot().counters["unparsed_packets"], 1)
        XCTAssertEqual(filter.matched(rule: 1).packets, 2)
    }

    func testFramesDecidedEarlierAreLeftAlone() throws {
        let filter = try makeFilter([], default: "drop")
        let umem = TestUMEM()
        umem.add(udp4("1.1.1.1", "2.2.2.2", 1, 2))
        let batch = umem.parsedBatch()
        batch.descriptors[0].verdict = .transmit
        filter.process(batch)
        XCTAssertEqual(batch.descriptors[0].verdict, .transmit)
        XCTAssertEqual(filter.snapshot().counters["dropped"], 0)
    }

    func testRuleErrorsNameTheOption() {
        func error(_ options: [String: ModuleOptionValue]) -> String {
            do {
                _ = try ModuleKind.filter.descriptor.make(options)
                return "no error"
            } catch {
                return String(describing: error)
            }
        }
        func rule(_ table: [String: ModuleOptionValue]) -> [String: ModuleOptionValue] { ["rules": .array([.table(table)])] }
        XCTAssertEqual(error(["rulez": .array([])]), "module 'filter', option 'rulez': unknown option; known options: rules, default")
        XCTAssertEqual(error(rule(["proto": .string("udp")])), "module 'filter', option 'rules[0].action': missing (pass or drop)")
        XCTAssertEqual(error(rule(["action": .string("reject")])), "module 'filter', option 'rules[0].action': 'reject' is not one of pass, drop")
        XCTAssertEqual(error(rule(["action": .string("drop"), "src": .string("10.0.0.0/33")])),
                       "module 'filter', option 'rules[0].src': '10.0.0.0/33' is not an IPv4 or IPv6 address or prefix (e.g. 10.0.0.0/8)")
        XCTAssertEqual(error(rule(["action": .string("drop"), "src": .string("10.0.0.0/8"), "dst": .string("::1")])),
                       "module 'filter', option 'rules[0].dst': IPv6 prefix in an IPv4 rule")
        XCTAssertEqual(error(rule(["action": .string("drop"), "dport": .integer(70000)])),
                       "module 'filter', option 'rules[0].dport': 70000 is out of range 0...65535")
        XCTAssertEqual(error(rule(["action": .string("drop"), "sport": .string("9-1")])),
                       "module 'filter', option 'rules[0].sport': '9-1' is not a port or port range LOW-HIGH within 0-65535")
        XCTAssertEqual(error(rule(["action": .string("drop"), "sport": .string("1-2-3")])),
                       "module 'filter', option 'rules[0].sport': '1-2-3' is not a port or port range LOW-HIGH within 0-65535")
        XCTAssertEqual(error(rule(["action": .string("drop"), "proto": .string("icmp"), "dport": .integer(1)])),
                       "module 'filter', option 'rules[0].dport': ports need proto tcp or udp")
        XCTAssertEqual(error(rule(["action": .string("drop"), "proto": .string("gre")])),
                       "module 'filter', option 'rules[0].proto': unknown protocol 'gre'; use icmp, icmpv6, sctp, tcp, udp or a number")
        XCTAssertEqual(error(rule(["action": .string("drop"), "extra": .bool(true)])),
                       "module 'filter', option 'rules[0].extra': unknown option; known options: action, ip, src, dst, proto, sport, dport")
        XCTAssertEqual(error(["rules": .array([.string("drop all")])]), "module 'filter', option 'rules[0]': expected a table, got a string")
    }

    func testPrefixParsing() throws {
        let v4 = try XCTUnwrap(AddressPrefix("10.1.2.3/8"))
        XCTAssertEqual(v4.description, "10.0.0.0/8")
        let v6 = try XCTUnwrap(AddressPrefix("2001:db8:aaaa:bbbb:cccc::1/72"))
        XCTAssertEqual(v6.description, "2001:db8:aaaa:bbbb:cc00::/72")
        XCTAssertEqual(AddressPrefix("::/0")?.description, "::/0")
        XCTAssertEqual(AddressPrefix("192.0.2.1")?.length, 32)
        for bad in ["", "10.0.0.0/", "10.0.0/8", "fd00::/129", "x", "10.0.0.0/8/8", "10.0.0.0/-1", "10.0.0.0/0008"] {
            XCTAssertNil(AddressPrefix(bad), bad)
        }
    }
}

final class ReflectModuleTests: XCTestCase {
    func verifyChecksums(_ frame: [UInt8], headers: PacketHeaders, file: StaticString = #filePath, line: UInt = #line) {
        let l3 = Int(headers.l3Offset), l4 = Int(headers.l4Offset), end = Int(headers.l3End)
        let segment = Array(frame[l4..<end])
        let pseudo: [UInt8]
        if headers.ipVersion == 4 {
            XCTAssertEqual(checksum(Array(frame[l3..<l4])), 0, "IPv4 header checksum", file: file, line: line)
            pseudo = Array(frame[(l3 + 12)..<(l3 + 20)]) + [0, headers.ipProtocol] + be16(UInt16(segment.count))
        } else {
            pseudo = Array(frame[(l3 + 8)..<(l3 + 40)]) + be32(UInt32(segment.count)) + [0, 0, 0, headers.ipProtocol]
        }
        XCTAssertEqual(checksum(pseudo + segment), 0, "transport checksum", file: file, line: line)
    }

    func testSwapsAddressesAndPortsForIPv4AndIPv6() {
        var tagged = FrameBuilder(network: FrameBuilder.ipv4("10.0.0.1", "10.0.0.2"), transport: .udp(source: 1111, destination: 2222))
        tagged.tags = [(0x8100, 7)]
        let frames: [[UInt8]] = [
            udp4("192.0.2.1", "198.51.100.2", 40000, 53),
            FrameBuilder(network: FrameBuilder.ipv6("2001:db8::1", "2001:db8::2"), transport: .tcp(source: 80, destination: 50123)).build(),
            tagged.build(),
        ]
        let reflect = ReflectModule()
        let umem = TestUMEM()
        for frame in frames { umem.add(frame) }
        let batch = umem.parsedBatch()
        let before = (0..<frames.count).map { batch.headers[$0] }
        for index in 0..<frames.count { verifyChecksums(frames[index], headers: before[index]) }
        reflect.process(batch)
        for index in 0..<frames.count {
            XCTAssertEqual(batch.descriptors[index].verdict, .transmit)
            let out = umem.bytes(index)
            XCTAssertEqual(Array(out[0..<6]), FrameBuilder.macA, "destination MAC is the old source")
            XCTAssertEqual(Array(out[6..<12]), FrameBuilder.macB)
            let reparsed = HeaderParser.parse(frame: out, length: out.count)
            XCTAssertEqual(reparsed.malformation, .none)
            XCTAssertEqual(reparsed.sourceAddressHigh, before[index].destinationAddressHigh)
            XCTAssertEqual(reparsed.sourceAddressLow, before[index].destinationAddressLow)
            XCTAssertEqual(reparsed.destinationAddressHigh, before[index].sourceAddressHigh)
            XCTAssertEqual(reparsed.destinationAddressLow, before[index].sourceAddressLow)
            XCTAssertEqual(reparsed.sourcePort, before[index].destinationPort)
            XCTAssertEqual(reparsed.destinationPort, before[index].sourcePort)
            XCTAssertEqual(reparsed.vlanID, before[index].vlanID)
            verifyChecksums(out, headers: reparsed)
        }
        // Frames already decided are left alone…
        let reflected = (0..<frames.count).map { umem.bytes($0) }
        reflect.process(batch)
        XCTAssertEqual((0..<frames.count).map { umem.bytes($0) }, reflected)
        XCTAssertEqual(reflect.snapshot().counters["reflected"], 3)
        // …and everything but the swapped fields is untouched: reflecting twice restores the frame.
        for index in 0..<frames.count { batch.descriptors[index].verdict = .pass }
        HeaderParser.parse(batch)
        reflect.process(batch)
        for index in 0..<frames.count { XCTAssertEqual(umem.bytes(index), frames[index]) }
        XCTAssertEqual(reflect.snapshot().counters["reflected"], 6)
    }

    func testLeavesMalformedAndNonIPFramesAlone() {
        let reflect = ReflectModule()
        let umem = TestUMEM()
        let arp = FrameBuilder.macB + FrameBuilder.macA + [0x08, 0x06] + [UInt8](repeating: 1, count: 28)
        let cut = Array(udp4("1.1.1.1", "2.2.2.2", 1, 2).prefix(30))
        umem.add(arp)
        umem.add(cut)
        let batch = umem.parsedBatch()
        reflect.process(batch)
        XCTAssertEqual(batch.descriptors[0].verdict, .pass)
        XCTAssertEqual(batch.descriptors[1].verdict, .pass)
        XCTAssertEqual(umem.bytes(0), arp)
        XCTAssertEqual(umem.bytes(1), cut)
        XCTAssertEqual(reflect.snapshot().counters["skipped"], 2)
    }
}

final class ModuleRegistryTests: XCTestCase {
    func testBuildsEachKind() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("factory"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let count = try ModuleKind.count.descriptor.make(["capacity": .integer(256), "top": .integer(3)])
        XCTAssertEqual((count as? CountModule)?.options, CountModule.Options(capacity: 256, top: 3))
        XCTAssertEqual(try ModuleKind.reflect.descriptor.make([:]).kind, "reflect")
        XCTAssertEqual(try ModuleKind.filter.descriptor.make([:]).kind, "filter")
        let pcap = try ModuleKind.pcap.descriptor.make(["path": .string(directory.appendingPathComponent("x.pcap").path), "max_bytes": .integer(4096)])
        XCTAssertEqual((pcap as? PcapModule)?.options.maxBytes, 4096)
    }

    func testEveryKindIsRegisteredWithTheOptionsItsParserReads() throws {
        for kind in ModuleKind.allCases {
            XCTAssertEqual(kind.descriptor.kind, kind)
            XCTAssertFalse(kind.descriptor.summary.isEmpty, "\(kind)")
        }
        XCTAssertEqual(ModuleKind.count.descriptor.options.map(\.name), ["capacity", "top"])
        XCTAssertEqual(ModuleKind.count.descriptor.options.first?.range, CountModule.Options.capacityRange)
        XCTAssertEqual(
            ModuleKind.pcap.descriptor.options.map(\.name),
            ["path", "snaplen", "max_bytes", "max_files", "buffer_bytes", "format", "rx_hash"])
        XCTAssertEqual(ModuleKind.pcap.descriptor.options.first { $0.name == "format" }?.choices, ["pcapng", "pcap"])
        XCTAssertEqual(ModuleKind.pcap.descriptor.options.last?.choices, ["off", "toeplitz"])
        XCTAssertNil(ModuleKind.pcap.descriptor.options.first?.defaultText, "path is required")
        XCTAssertEqual(ModuleKind.filter.descriptor.options.last?.choices, ["pass", "drop"])
        XCTAssertEqual(ModuleKind.reflect.descriptor.options, [])
        XCTAssertEqual(ModuleKind.latency.descriptor.options, [])
    }

    func testErrorsNameKindAndOption() {
        func error(_ kind: ModuleKind, _ options: [String: ModuleOptionValue]) -> String {
            do {
                _ = try kind.descriptor.make(options)
                return "no error"
            } catch {
                return String(describing: error)
            }
        }
        XCTAssertEqual(error(.count, ["capacity": .integer(1000)]), "module 'count', option 'capacity': 1000 is not a power of two")
        XCTAssertEqual(error(.count, ["capacity": .integer(1 << 30)]), "module 'count', option 'capacity': 1073741824 is out of range 1...16777216")
        XCTAssertEqual(error(.count, ["capacity": .string("big")]), "module 'count', option 'capacity': expected an integer, got a string")
        XCTAssertEqual(error(.count, ["size": .integer(1)]), "module 'count', option 'size': unknown option; known options: capacity, top")
        XCTAssertEqual(error(.reflect, ["mode": .string("x")]), "module 'reflect', option 'mode': unknown option; known options: none")
        XCTAssertEqual(error(.pcap, [:]), "module 'pcap', option 'path': missing (absolute path of the capture file)")
        XCTAssertEqual(error(.pcap, ["path": .string("relative.pcap")]), "module 'pcap', option 'path': 'relative.pcap' is not an absolute path")
        XCTAssertEqual(error(.pcap, ["path": .string("/tmp/x.pcap"), "max_bytes": .integer(100)]),
                       "module 'pcap', option 'max_bytes': 100 is below 1024 (0 disables rotation)")
        XCTAssertEqual(error(.pcap, ["path": .string("/tmp/x.pcap"), "snaplen": .integer(65535), "buffer_bytes": .integer(8192)]),
                       "module 'pcap', option 'buffer_bytes': 8192 cannot hold one 65535-byte record plus headers")
        // A missing capture directory is made when the module starts; one under a file never can be.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("file")).path
        XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: Data()))
        defer { try? FileManager.default.removeItem(atPath: file) }
        XCTAssertEqual(error(.pcap, ["path": .string(file + "/captures/cap.pcap")]),
                       "module 'pcap', option 'path': the capture directory '\(file)/captures' cannot be made:"
                           + " '\(file)' is not a directory; create it or choose a path on a writable file system")
    }
}

