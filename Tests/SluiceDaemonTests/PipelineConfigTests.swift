import Foundation
import SluiceDataPath
import SluiceModules
import SluiceProtocol
import SluiceTestSupport
import XCTest

@testable import SluiceDaemon

/// `[pipeline]`, `[[pipeline.modules]]` and `[[interface]]`.
final class PipelineConfigTests: XCTestCase {
    /// Lines 1-2 of every text, so that no group look-up can fail: the
    /// first line of the rest is line 3.
    let ownGroup = "[control]\nsocket_group = \"\"\n"

    func parse(_ text: String) throws -> SluiceConfig {
        try SluiceConfig.parse(text: ownGroup + text, file: "test.toml")
    }

    /// Every error of `ownGroup + text`, one description each, in line order.
    func errors(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> [String] {
        configErrors(ownGroup + text, file: file, line: line).map(\.description)
    }

    // MARK: Defaults and valid files

    func testDefaultsAreTheSpecifiedValues() throws {
        let pipeline = SluiceConfig.defaults.pipeline
        XCTAssertEqual(pipeline.mode, .pipelined)
        XCTAssertTrue(pipeline.autostart)
        XCTAssertEqual(pipeline.batchSize, 64)
        XCTAssertEqual(pipeline.frameSize, 4096)
        XCTAssertEqual(pipeline.frames, 4096)
        XCTAssertEqual(
            [pipeline.rxRing, pipeline.txRing, pipeline.fillRing, pipeline.completionRing, pipeline.handoffRing],
            [2048, 2048, 4096, 2048, 4096])
        XCTAssertEqual(pipeline.modules, [])
        XCTAssertEqual(SluiceConfig.defaults.interfaces, [])

        // An interface with only its name gets every other key's default.
        let config = try parse("[[interface]]\nname = \"eth0\"\nplugin = \"\"\n")
        let interface = try XCTUnwrap(config.interfaces.first)
        XCTAssertEqual(config.interfaces.count, 1)
        XCTAssertEqual(interface.name, "eth0")
        XCTAssertNil(interface.plugin)
        XCTAssertNil(interface.channels)
        XCTAssertEqual(interface.bindMode, .auto)
        XCTAssertEqual(interface.attachMode, .native)
        XCTAssertEqual(interface.rxCPUs, [])
        XCTAssertEqual(interface.workerCPUs, [])
        XCTAssertEqual(interface.prefilterProtocols, [])
        XCTAssertEqual(interface.prefilterPorts, [])
        XCTAssertEqual(config.pipeline, SluiceConfig.defaults.pipeline)
    }

    func testFullValidFileSetsEveryKey() throws {
        let config = try parse("""
            [pipeline]
            mode = "inline"
            autostart = false
            batch_size = 1024
            frame_size = 2048
            frames = 262144
            rx_ring = 64
            tx_ring = 65536
            fill_ring = 128
            completion_ring = 256
            handoff_ring = 1048576

            [[pipeline.modules]]
            kind = "count"
            capacity = 1024
            top = 5

            [[pipeline.modules]]
            kind = "filter"
            default = "drop"
            rules = [
              { proto = "udp", dport = 53, action = "pass" },
              { src = "10.0.0.0/8", action = "pass" },
            ]

            [[pipeline.modules]]
            kind = "reflect"

            [[interface]]
            name = "eth0"
            plugin = "mlx5"
            channels = [3, 0, 65535]
            bind_mode = "zerocopy"
            attach_mode = "skb"
            rx_cpus = [0, 1023, 0]
            worker_cpus = [2]
            prefilter_protocols = ["udp", "tcp", "icmp", "icmpv6"]
            prefilter_ports = [53, "5000-5010", 0, "65535-65535"]

            [[interface]]
            name = "v.d_d-123456789"
            """)

        var pipeline = SluiceConfig.Pipeline()
        pipeline.mode = .inline
        pipeline.autostart = false
        pipeline.batchSize = 1024
        pipeline.frameSize = 2048
        pipeline.frames = 262_144
        pipeline.rxRing = 64
        pipeline.txRing = 65536
        pipeline.fillRing = 128
        pipeline.completionRing = 256
        pipeline.handoffRing = 1_048_576
        pipeline.modules = [
            SluiceConfig.Module(kind: .count, options: ["capacity": .integer(1024), "top": .integer(5)], line: 15),
            SluiceConfig.Module(kind: .filter, options: [
                "default": .string("drop"),
                "rules": .array([
                    .table(["proto": .string("udp"), "dport": .integer(53), "action": .string("pass")]),
                    .table(["src": .string("10.0.0.0/8"), "action": .string("pass")]),
                ]),
            ], line: 20),
            SluiceConfig.Module(kind: .reflect, options: [:], line: 28),
        ]
        XCTAssertEqual(config.pipeline, pipeline)
        // Each module knows the line of its header; equality ignores it.
        XCTAssertEqual(config.pipeline.modules.map(\.line), [15, 20, 28])
        XCTAssertEqual(SluiceConfig.Module(kind: .reflect, line: 1), SluiceConfig.Module(kind: .reflect, line: 2))
        XCTAssertNotEqual(SluiceConfig.Module(kind: .reflect), SluiceConfig.Module(kind: .count))
        XCTAssertNotEqual(
            SluiceConfig.Module(kind: .count, options: ["top": .integer(1)]),
            SluiceConfig.Module(kind: .count, options: ["top": .integer(2)]))

        var first = SluiceConfig.Interface(name: "eth0")
        first.plugin = "mlx5"
        first.channels = [3, 0, 65535]
        first.bindMode = .zerocopy
        first.attachMode = .skb
        first.rxCPUs = [0, 1023, 0]
        first.workerCPUs = [2]
        first.prefilterProtocols = [.udp, .tcp, .icmp, .icmpv6]
        first.prefilterPorts = [53...53, 5000...5010, 0...0, 65535...65535]
        XCTAssertEqual(config.interfaces, [first, SluiceConfig.Interface(name: "v.d_d-123456789")])
    }

    func testInlineArraySpellingsAreEquivalent() throws {
        let config = try SluiceConfig.parse(text: """
            pipeline = { modules = [{ kind = "count" }], batch_size = 8 }
            interface = [{ name = "a", channels = [] }, { name = "b" }]

            """ + ownGroup, file: "test.toml")
        XCTAssertEqual(config.pipeline.modules.map(\.kind), [.count])
        XCTAssertEqual(config.pipeline.batchSize, 8)
        XCTAssertEqual(config.interfaces.map(\.name), ["a", "b"])
        // An empty list is "no channel", which differs from leaving the key out ("all").
        XCTAssertEqual(config.interfaces.first?.channels, [])
        XCTAssertNil(config.interfaces.last?.channels)
    }

    // MARK: [pipeline]

    func testPipelineKeysAreChecked() {
        XCTAssertEqual(errors("""
            [pipeline]
            mode = "batched"
            autostart = "yes"
            batch_size = 0
            frame_size = 3000
            frames = 100
            rx_ring = 32
            tx_ring = 131072
            fill_ring = 4095
            completion_ring = "2048"
            handoff_ring = 2097152
            module = []
            """), [
            "test.toml:4: pipeline.mode: \"batched\" is not one of inline, pipelined",
            "test.toml:5: pipeline.autostart: expected true or false, got string",
            "test.toml:6: pipeline.batch_size: 0 is out of range 1...1024",
            "test.toml:7: pipeline.frame_size: 3000 is not one of 2048, 4096",
            "test.toml:8: pipeline.frames: 100 is not a power of two",
            "test.toml:9: pipeline.rx_ring: 32 is out of range 64...65536",
            "test.toml:10: pipeline.tx_ring: 131072 is out of range 64...65536",
            "test.toml:11: pipeline.fill_ring: 4095 is not a power of two",
            "test.toml:12: pipeline.completion_ring: expected an integer, got string",
            "test.toml:13: pipeline.handoff_ring: 2097152 is out of range 64...1048576",
            "test.toml:14: pipeline.module: unknown key; did you mean 'modules'?",
        ])
        XCTAssertEqual(errors("[pipeline]\nbatch_size = 1025\nframes = 262145\n"), [
            "test.toml:4: pipeline.batch_size: 1025 is out of range 1...1024",
            "test.toml:5: pipeline.frames: 262145 is out of range 64...262144",
        ])
    }

    // MARK: [[pipeline.modules]]

    func testModuleKindIsRequiredAndKnown() {
        XCTAssertEqual(errors("""
            [[pipeline.modules]]
            top = 3
            [[pipeline.modules]]
            kind = "counter"
            [[pipeline.modules]]
            kind = 1
            """), [
            "test.toml:3: pipeline.modules[0].kind: missing; every [[pipeline.modules]] needs a kind;"
                + " the kinds are count, filter, pcap, reflect, latency",
            "test.toml:6: pipeline.modules[1].kind: \"counter\" is not a module kind;"
                + " the kinds are count, filter, pcap, reflect, latency",
            "test.toml:8: pipeline.modules[2].kind: expected a string, got integer",
        ])
    }

    func testModuleOptionErrorsLandOnTheOptionsLine() {
        XCTAssertEqual(errors("""
            [[pipeline.modules]]
            kind = "count"
            top = 3

            capacity = 1000
            [[pipeline.modules]]
            kind = "count"
            tops = 3
            [[pipeline.modules]]
            kind = "filter"
            rules = [
              { proto = "udp", dport = 53, action = "drop" },
              { proto = "tcp", dport = 70000, action = "drop" },
            ]
            [[pipeline.modules]]
            kind = "reflect"
            ratio = 1.5
            [[pipeline.modules]]
            kind = "pcap"
            path = "capture.pcap"
            """), [
            "test.toml:7: pipeline.modules[0].capacity: 1000 is not a power of two",
            "test.toml:10: pipeline.modules[1].tops: unknown option; known options: capacity, top",
            "test.toml:15: pipeline.modules[2].rules[1].dport: 70000 is out of range 0...65535",
            "test.toml:19: pipeline.modules[3].ratio: expected a string, integer, boolean, array or table,"
                + " got floating-point number",
            "test.toml:22: pipeline.modules[4].path: 'capture.pcap' is not an absolute path",
        ])
    }

    func testModuleErrorWithoutAnOptionLandsOnTheHeader() {
        // pcap's path is required: the module reports the option it lacks,
        // which the file does not have, so the error goes to the header.
        XCTAssertEqual(errors("\n[[pipeline.modules]]\nkind = \"pcap\"\n"), [
            "test.toml:4: pipeline.modules[0].path: missing (absolute path of the capture file)",
        ])
    }

    func testValidatingAPcapModuleCreatesNoFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("pcapcfg"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("capture.pcap").path
        let config = try parse("[[pipeline.modules]]\nkind = \"pcap\"\npath = \"\(path)\"\nmax_files = 2\n")
        XCTAssertEqual(config.pipeline.modules, [
            SluiceConfig.Module(kind: .pcap, options: ["path": .string(path), "max_files": .integer(2)], line: 3),
        ])
        XCTAssertEqual(config.pipeline.modules.first?.line, 3)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), [])
        // The same options do build a module (which does create the file).
        let module = try ModuleKind.pcap.descriptor.make(config.pipeline.modules[0].options)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))
        _ = module
    }

    func testModulesMustBeTablesAndBounded() {
        XCTAssertEqual(errors("[pipeline]\nmodules = \"count\"\n"), [
            "test.toml:4: pipeline.modules: expected an array of tables ([[pipeline.modules]]), got string",
        ])
        XCTAssertEqual(errors("[pipeline]\nmodules = [{ kind = \"count\" }, 3]\n"), [
            "test.toml:4: pipeline.modules[1]: expected a table, got integer",
        ])
        let many = String(repeating: "[[pipeline.modules]]\nkind = \"reflect\"\n", count: 33)
        XCTAssertEqual(errors(many), ["test.toml:3: pipeline.modules: 33 tables, at most 32 allowed"])
        XCTAssertEqual(
            try parse(String(repeating: "[[pipeline.modules]]\nkind = \"reflect\"\n", count: 32)).pipeline.modules.count,
            32)
    }

    // MARK: [[interface]]

    func testBusyPollKeysAreCheckedAndMapped() throws {
        XCTAssertEqual(errors("""
            [[interface]]
            name = "eth0"
            busy_poll = 1
            busy_poll_usecs = 0
            busy_poll_budget = 65536
            napi_defer_hard_irqs = -1
            gro_flush_timeout = 1000000001
            """), [
            "test.toml:5: interface[0].busy_poll: expected true or false, got integer",
            "test.toml:6: interface[0].busy_poll_usecs: 0 is out of range 1...1000000",
            "test.toml:7: interface[0].busy_poll_budget: 65536 is out of range 1...65535",
            "test.toml:8: interface[0].napi_defer_hard_irqs: -1 is out of range 0...2147483647",
            "test.toml:9: interface[0].gro_flush_timeout: 1000000001 is out of range 0...1000000000",
        ])
        let defaults = try XCTUnwrap(parse("[[interface]]\nname = \"eth0\"\n").interfaces.first)
        XCTAssertFalse(defaults.busyPoll)
        XCTAssertEqual([defaults.busyPollMicroseconds, defaults.busyPollBudget, defaults.napiDeferHardIRQs,
                        defaults.groFlushTimeoutNanoseconds], [20, 64, 2, 200_000], "af_xdp.rst's example values")
        let preparation = Preparation(
            needsNtuple: false, steeringRequired: false, excludeFromRSS: false, combinedChannels: false, copyModeOnly: false,
            unknownFlags: 0, minXskmapEntries: 0, receiveChannels: nil, message: "")
        let off = try PipelineManager.dataPathConfig(defaults, SluiceConfig.defaults.pipeline, preparation: preparation)
        XCTAssertNil(off.busyPoll)

        let interface = try XCTUnwrap(parse("""
            [[interface]]
            name = "eth0"
            busy_poll = true
            busy_poll_usecs = 50
            busy_poll_budget = 16
            napi_defer_hard_irqs = 10
            gro_flush_timeout = 0
            """).interfaces.first)
        XCTAssertTrue(interface.busyPoll)
        XCTAssertEqual([interface.napiDeferHardIRQs, interface.groFlushTimeoutNanoseconds], [10, 0])
        let on = try PipelineManager.dataPathConfig(interface, SluiceConfig.defaults.pipeline, preparation: preparation)
        XCTAssertEqual(on.busyPoll, DataPathConfig.BusyPoll(microseconds: 50, budget: 16))
    }

    /// rx_metadata: auto by default (the metadata program where it can
    /// run), off on request; nothing else is accepted.
    func testRxMetadataIsAutoOrOff() throws {
        let preparation = Preparation(
            needsNtuple: false, steeringRequired: false, excludeFromRSS: false, combinedChannels: false, copyModeOnly: false,
            unknownFlags: 0, minXskmapEntries: 0, receiveChannels: nil, message: "")
        let defaults = try XCTUnwrap(parse("[[interface]]\nname = \"eth0\"\n").interfaces.first)
        XCTAssertEqual(defaults.rxMetadata, .auto)
        XCTAssertTrue(try PipelineManager.dataPathConfig(defaults, SluiceConfig.defaults.pipeline, preparation: preparation).rxMetadata)
        XCTAssertFalse(
            try PipelineManager.dataPathConfig(defaults, SluiceConfig.defaults.pipeline, preparation: preparation).rxMetadataReaders,
            "no module by default: nothing reads RX metadata")
        let withCount = try parse("[pipeline]\n[[pipeline.modules]]\nkind = \"filter\"\n[[pipeline.modules]]\nkind = \"count\"\n")
        XCTAssertTrue(try PipelineManager.dataPathConfig(defaults, withCount.pipeline, preparation: preparation).rxMetadataReaders)
        let filterOnly = try parse("[pipeline]\n[[pipeline.modules]]\nkind = \"filter\"\n")
        XCTAssertFalse(try PipelineManager.dataPathConfig(defaults, filterOnly.pipeline, preparation: preparation).rxMetadataReaders)
        let off = try XCTUnwrap(parse("[[interface]]\nname = \"eth0\"\nrx_metadata = \"off\"\n").interfaces.first)
        XCTAssertEqual(off.rxMetadata, .off)
        XCTAssertFalse(try PipelineManager.dataPathConfig(off, SluiceConfig.defaults.pipeline, preparation: preparation).rxMetadata)
        let problems = errors("[[interface]]\nname = \"eth0\"\nrx_metadata = \"on\"\n")
        XCTAssertEqual(problems, ["test.toml:5: interface[0].rx_metadata: \"on\" is not one of auto, off"])
    }

    func testMultiBufferIsAChoiceMappedToTheDataPath() throws {
        XCTAssertEqual(errors("""
            [[interface]]
            name = "eth0"
            multi_buffer = "yes"
            """), ["test.toml:5: interface[0].multi_buffer: \"yes\" is not one of auto, on, off"])
        let preparation = Preparation(
            needsNtuple: false, steeringRequired: false, excludeFromRSS: false, combinedChannels: false, copyModeOnly: false,
            unknownFlags: 0, minXskmapEntries: 0, receiveChannels: nil, message: "")
        for mode in MultiBufferMode.allCases {
            let interface = try XCTUnwrap(parse("[[interface]]\nname = \"eth0\"\nmulti_buffer = \"\(mode.rawValue)\"\n").interfaces.first)
            let config = try PipelineManager.dataPathConfig(interface, SluiceConfig.defaults.pipeline, preparation: preparation)
            XCTAssertEqual(config.multiBuffer, mode)
        }
        XCTAssertEqual(try XCTUnwrap(parse("[[interface]]\nname = \"eth0\"\n").interfaces.first).multiBuffer, .auto)
    }

    func testInterfaceNameIsRequiredAndValid() {
        XCTAssertEqual(errors("""
            [[interface]]
            channels = [0]
            [[interface]]
            name = "a-very-long-name"
            [[interface]]
            name = ".."
            [[interface]]
            name = "a/b"
            [[interface]]
            name = ""
            [[interface]]
            name = "eth 0"
            [[interface]]
            name = 7
            """), [
            "test.toml:3: interface[0].name: missing; every [[interface]] names the network interface to use",
            "test.toml:6: interface[1].name: \"a-very-long-name\" is 16 bytes long; an interface name has at most 15",
            "test.toml:8: interface[2].name: \"..\" is not a valid interface name",
            "test.toml:10: interface[3].name: interface name \"a/b\" contains '/', ':', whitespace or NUL",
            "test.toml:12: interface[4].name: the interface name is empty",
            "test.toml:14: interface[5].name: interface name \"eth 0\" contains '/', ':', whitespace or NUL",
            "test.toml:16: interface[6].name: expected a string, got integer",
        ])
    }

    func testDuplicateInterfaceNames() {
        XCTAssertEqual(errors("""
            [[interface]]
            name = "eth0"
            [[interface]]
            name = "eth1"
            [[interface]]
            name = "eth0"
            """), [
            "test.toml:8: interface[2].name: interface \"eth0\" is already configured by interface[0] (line 4)",
        ])
    }

    func testUnknownInterfaceKeys() {
        XCTAssertEqual(errors("""
            [[interface]]
            name = "eth0"
            channel = [0]
            batch_size = 64
            colour = "blue"
            [interface.queues]
            rx = 1
            """), [
            "test.toml:5: interface[0].channel: unknown key; did you mean 'channels'?",
            "test.toml:6: interface[0].batch_size: unknown key; 'batch_size' belongs in [pipeline]",
            "test.toml:7: interface[0].colour: unknown key; [[interface]] has name, plugin, channels, bind_mode,"
                + " attach_mode, rx_cpus, worker_cpus, prefilter_protocols, prefilter_ports, busy_poll,"
                + " busy_poll_usecs, busy_poll_budget, napi_defer_hard_irqs, gro_flush_timeout, rx_metadata, multi_buffer",
            "test.toml:8: interface[0].queues: unknown table; [[interface]] has name, plugin, channels, bind_mode,"
                + " attach_mode, rx_cpus, worker_cpus, prefilter_protocols, prefilter_ports, busy_poll,"
                + " busy_poll_usecs, busy_poll_budget, napi_defer_hard_irqs, gro_flush_timeout, rx_metadata, multi_buffer",
        ])
        // And the other way round.
        XCTAssertEqual(errors("[pipeline]\nbind_mode = \"copy\"\n"), [
            "test.toml:4: pipeline.bind_mode: unknown key; 'bind_mode' belongs in [[interface]]",
        ])
    }

    func testInterfaceMustBeAnArrayOfTables() {
        XCTAssertEqual(errors("[interface]\nname = \"eth0\"\n"), [
            "test.toml:3: interface: expected an array of tables ([[interface]]), got table",
        ])
        let top = configErrors("interface = \"eth0\"\n" + ownGroup).map(\.description)
        XCTAssertEqual(top, ["test.toml:1: interface: expected an array of tables ([[interface]]), got string"])
    }

    func testChannels() {
        XCTAssertEqual(errors("""
            [[interface]]
            name = "a"
            channels = [0, 1, 0]
            [[interface]]
            name = "b"
            channels = [65536]
            [[interface]]
            name = "c"
            channels = [-1]
            [[interface]]
            name = "d"
            channels = ["0"]
            [[interface]]
            name = "e"
            channels = 0
            """), [
            "test.toml:5: interface[0].channels: channel 0 is listed twice",
            "test.toml:8: interface[1].channels: channel 65536 is out of range 0...65535",
            "test.toml:11: interface[2].channels: channel -1 is out of range 0...65535",
            "test.toml:14: interface[3].channels: expected integers, got string",
            "test.toml:17: interface[4].channels: expected an array, got integer",
        ])
    }

    func testModesPluginAndCPUs() {
        XCTAssertEqual(errors("""
            [[interface]]
            name = "a"
            bind_mode = "zero-copy"
            attach_mode = "generic"
            plugin = "../evil"
            rx_cpus = [0, 1024]
            worker_cpus = 1
            [[interface]]
            name = "b"
            plugin = "a-plugin-name-that-is-far-too-long"
            """), [
            "test.toml:5: interface[0].bind_mode: \"zero-copy\" is not one of auto, zerocopy, copy",
            "test.toml:6: interface[0].attach_mode: \"generic\" is not one of native, skb",
            "test.toml:7: interface[0].plugin: \"../evil\" is not a plugin name (letters, digits, '_', '-', '.')",
            "test.toml:8: interface[0].rx_cpus: CPU 1024 is out of range 0...1023",
            "test.toml:9: interface[0].worker_cpus: expected an array, got integer",
            "test.toml:12: interface[1].plugin: plugin name \"a-plugin-name-that-is-far-too-long\" is 34 bytes long;"
                + " the limit is 31",
        ])
    }

    func testPrefilter() {
        XCTAssertEqual(errors("""
            [[interface]]
            name = "a"
            prefilter_protocols = ["udp", "sctp"]
            [[interface]]
            name = "b"
            prefilter_protocols = ["icmp", "icmp"]
            [[interface]]
            name = "c"
            prefilter_protocols = ["icmp"]
            prefilter_ports = [22]
            [[interface]]
            name = "d"
            prefilter_ports = [53]
            [[interface]]
            name = "e"
            prefilter_protocols = ["tcp"]
            prefilter_ports = [70000, "1-2"]
            [[interface]]
            name = "f"
            prefilter_protocols = ["tcp"]
            prefilter_ports = ["2000-1000"]
            [[interface]]
            name = "g"
            prefilter_protocols = ["tcp"]
            prefilter_ports = ["80", 1]
            [[interface]]
            name = "h"
            prefilter_protocols = ["tcp"]
            prefilter_ports = [true]
            [[interface]]
            name = "i"
            prefilter_protocols = ["tcp"]
            prefilter_ports = [80, "80-80"]
            """), [
            "test.toml:5: interface[0].prefilter_protocols: \"sctp\" is not one of udp, tcp, icmp, icmpv6",
            "test.toml:8: interface[1].prefilter_protocols: \"icmp\" is listed twice",
            "test.toml:12: interface[2].prefilter_ports: ports apply to udp and tcp only;"
                + " add \"udp\" or \"tcp\" to prefilter_protocols",
            "test.toml:15: interface[3].prefilter_ports: ports apply to udp and tcp only;"
                + " add \"udp\" or \"tcp\" to prefilter_protocols",
            "test.toml:19: interface[4].prefilter_ports: port 70000 is out of range 0...65535",
            "test.toml:23: interface[5].prefilter_ports: port range \"2000-1000\" ends before it starts",
            "test.toml:27: interface[6].prefilter_ports: \"80\" is not a port range \"LOW-HIGH\" with ports 0...65535",
            "test.toml:31: interface[7].prefilter_ports: expected port numbers or \"LOW-HIGH\" strings, got boolean",
            "test.toml:35: interface[8].prefilter_ports: port 80 is listed twice",
        ])
        // The XDP program's prefilter holds 8 port ranges.
        let nine = (1...9).map(String.init).joined(separator: ", ")
        XCTAssertEqual(errors("[[interface]]\nname = \"a\"\nprefilter_protocols = [\"udp\"]\nprefilter_ports = [\(nine)]\n"), [
            "test.toml:6: interface[0].prefilter_ports: 9 items, at most 8 allowed",
        ])
        let eight = (1...8).map(String.init).joined(separator: ", ")
        XCTAssertEqual(
            try parse("[[interface]]\nname = \"a\"\nprefilter_protocols = [\"udp\"]\nprefilter_ports = [\(eight)]\n")
                .interfaces.first?.prefilterPorts.count,
            8)
    }

    func testEveryErrorIsReportedTogether() {
        let found = errors("""
            [pipeline]
            frames = 3
            [[pipeline.modules]]
            kind = "count"
            capacity = 3
            [[interface]]
            name = "a"
            channels = [1, 1]
            [[interface]]
            name = "a"
            bind_mode = "fast"
            """)
        XCTAssertEqual(found.map { $0.split(separator: ":").prefix(3).joined(separator: ":") }, [
            "test.toml:4: pipeline.frames",
            "test.toml:7: pipeline.modules[0].capacity",
            "test.toml:10: interface[0].channels",
            "test.toml:12: interface[1].name",
            "test.toml:13: interface[1].bind_mode",
        ])
    }

    // MARK: Shipped files

    func testShippedLabFileHasThePipelineAndTheLabInterface() throws {
        let path = repositoryRoot.appendingPathComponent("etc/sluice-lab.toml").path
        let config = try SluiceConfig.load(path: path)
        XCTAssertEqual(config.pipeline.mode, .pipelined)
        XCTAssertEqual(config.pipeline.modules.map(\.kind), [.count, .pcap])
        XCTAssertEqual(config.pipeline.modules.first?.options, ["top": .integer(10)])
        XCTAssertEqual(config.pipeline.modules.last?.options, [
            "path": .string("/var/lib/sluice-lab/capture.pcap"),
            "max_bytes": .integer(16_777_216),
            "max_files": .integer(2),
        ])
        XCTAssertEqual(config.interfaces, [SluiceConfig.Interface(name: "sluice-app")])
    }

    /// The default file ships no module and no interface; its commented
    /// examples (lines starting `#[` or `#key =`) must be valid when uncommented.
    func testShippedDefaultFileExamplesAreValid() throws {
        let path = repositoryRoot.appendingPathComponent("etc/sluice.toml").path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let shipped = try SluiceConfig.parse(
            text: text.replacingOccurrences(of: "socket_group = \"sluice\"", with: "socket_group = \"\""), file: path)
        XCTAssertEqual(shipped.pipeline, SluiceConfig.defaults.pipeline)
        XCTAssertEqual(shipped.interfaces, [])

        var uncommented = 0
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> Substring in
            guard line.hasPrefix("#"), let next = line.dropFirst().first, next == "[" || next.isLetter else { return line }
            uncommented += 1
            return line.dropFirst()
        }
        XCTAssertGreaterThan(uncommented, 15)
        let examples = lines.joined(separator: "\n")
            .replacingOccurrences(of: "socket_group = \"sluice\"", with: "socket_group = \"\"")
        let config = try SluiceConfig.parse(text: examples, file: path)
        XCTAssertEqual(config.pipeline.modules.map(\.kind), [.count, .filter, .pcap, .latency])
        var interface = SluiceConfig.Interface(name: "eth1")
        interface.channels = [0, 1]
        interface.rxCPUs = [2, 3]
        interface.workerCPUs = [4, 5]
        interface.prefilterProtocols = [.udp]
        interface.prefilterPorts = [53...53, 5000...5010]
        XCTAssertEqual(config.interfaces, [interface])
    }
}
