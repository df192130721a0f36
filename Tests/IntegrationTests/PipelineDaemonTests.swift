import Foundation
import SluiceControl
import SluiceTestSupport
import Synchronization
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The receive pipeline run by the real daemon from its config, on a real
/// lab veth, with trafgen traffic: exact counts, pcap read back by tcpdump,
/// filter, prefilter, the plugin's mapping end to end, and clean stops.
final class PipelineDaemonTests: XCTestCase {
    private var lab: Lab?
    private var daemon: DaemonProcess?
    private var plugins: PluginDirectory?
    private var captureDirectory: String = ""

    override func setUpWithError() throws {
        try Privilege.require()
        let plugins = try PluginDirectory.withShippedPlugins()
        self.plugins = plugins
        captureDirectory = plugins.path + "-captures"
        try FileManager.default.createDirectory(atPath: captureDirectory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        daemon?.stop()
        try? lab?.down()
        plugins?.remove()
        try? FileManager.default.removeItem(atPath: captureDirectory)
    }

    /// A lab and a daemon whose config runs `modules` on the app end.
    private func start(
        queues: Int = 2, xpsQueues: [Int]? = nil, mode: String = "pipelined", modules: String,
        interface: String = "", metrics: Bool = false
    ) throws -> (Lab, DaemonProcess) {
        let lab = try Lab.up(queues: queues, xpsQueues: xpsQueues, prefix: "spd")
        self.lab = lab
        let metricsOn = metrics ? "[metrics]\nenabled = true\nlisten = \"127.0.0.1:0\"\n\n" : ""
        let daemon = try DaemonProcess(extraConfig: metricsOn + DaemonProcess.pipelineConfig(
            pluginDirectory: plugins!.path, interface: lab.appInterface, mode: mode, modules: modules,
            interfaceOptions: interface))
        self.daemon = daemon
        try daemon.start()
        try daemon.waitForPipeline()
        return (lab, daemon)
    }

    private func pipeline() throws -> JSONValue? {
        try daemon?.call("stats.get")["result"]?["pipelines"]?.arrayValue?.first
    }

    private func module(_ kind: String) throws -> JSONValue? {
        try pipeline()?["modules"]?.arrayValue?.first { $0["kind"] == .string(kind) }
    }

    private func counter(_ kind: String, _ name: String) throws -> Int {
        try module(kind)?["counters"]?[name]?.integer(as: Int.self) ?? -1
    }

    /// The rx queues the running pipeline's sockets are bound to.
    private func boundQueues() throws -> [Int] {
        try pipeline()?["statistics"]?["sockets"]?.arrayValue?.compactMap { $0["queue"]?.integer(as: Int.self) } ?? []
    }

    private func programID() throws -> Int? {
        try pipeline()?["statistics"]?["program_id"]?.integer(as: Int.self)
    }

    private func hasXDPProgram(_ lab: Lab) throws -> Bool {
        try lab.inApp(["ip", "-d", "link", "show", "dev", lab.appInterface], check: true).stdout.contains("prog/xdp")
    }

    func testEveryPacketIsCountedPerFlowInBothModes() throws {
        for mode in ["inline", "pipelined"] {
            let (lab, daemon) = try start(mode: mode, modules: """
                [[pipeline.modules]]
                kind = "count"
                top = 10
                """, interface: "prefilter_protocols = [\"udp\"]")
            let flows = UDPFlows(lab: lab, ports: [5001, 5002, 5003])
            let perWorker = 700
            try flows.send(perWorker: perWorker)
            let sent = 2 * perWorker * flows.ports.count
            try waitUntil("\(sent) packets accounted for (\(mode))", timeout: .seconds(20)) {
                let totals = try self.pipeline()?["totals"]
                let received = totals?["rx_packets"]?.integer(as: Int.self) ?? 0
                let dropped = (totals?["kernel_dropped"]?.integer(as: Int.self) ?? 0)
                    + (totals?["ring_full"]?.integer(as: Int.self) ?? 0)
                    + (totals?["handoff_drops"]?.integer(as: Int.self) ?? 0)
                return received + dropped >= sent
            }
            let totals = try XCTUnwrap(pipeline()?["totals"])
            XCTAssertEqual(totals["rx_packets"], JSONValue(sent), "\(mode): no drops expected at this rate: \(totals.serialized())")
            XCTAssertEqual(try counter("count", "packets"), sent, mode)
            XCTAssertEqual(try counter("count", "flows"), 3, mode)
            let rows = try module("count")?["rows"]?.arrayValue ?? []
            for port in flows.ports {
                let row = rows.first { $0["dport"] == .string(String(port)) }
                XCTAssertEqual(row?["packets"], .string(String(2 * perWorker)), "\(mode) flow \(port): \(rows)")
            }
            // Both queues carried traffic: each trafgen worker's CPU maps to one.
            let sockets = try XCTUnwrap(pipeline()?["statistics"]?["sockets"]?.arrayValue)
            XCTAssertEqual(sockets.map { $0["rx_packets"]?.integer(as: Int.self) ?? 0 }, [sent / 2, sent / 2], mode)
            // veth's rx queues do not change at XDP attach: nothing added, nothing to warn about.
            XCTAssertNil(try pipeline()?["unread_added_queues"], mode)
            XCTAssertFalse(daemon.log().contains("at XDP attach"), daemon.log())
            daemon.stop()
            self.daemon = nil
            try lab.down()
            self.lab = nil
        }
    }

    func testPcapFilesHoldExactlyWhatWasSent() throws {
        let path = captureDirectory + "/capture.pcap"
        let (lab, _) = try start(modules: """
            [[pipeline.modules]]
            kind = "pcap"
            path = "\(path)"
            """, interface: "prefilter_protocols = [\"udp\"]")
        let flows = UDPFlows(lab: lab, ports: [6001])
        try flows.send(perWorker: 50)
        try waitUntil("100 packets written") { try self.counter("pcap", "packets") >= 100 }
        // Stopping the pipeline flushes the files.
        XCTAssertEqual(try daemon!.call("pipeline.stop")["ok"], true)
        let frame = try flows.frames()[0]
        let hex = frame.map { String(format: "%02x", $0) }.joined()
        var total = 0
        for queue in 0..<2 {
            let file = captureDirectory + "/capture-queue\(queue).pcap"
            let dump = try runCommand(["tcpdump", "-r", file, "-nn", "-xx"], check: true).stdout
            let packets = dump.split(separator: "\n").filter { !$0.hasPrefix("\t") && !$0.hasPrefix(" ") }
            total += packets.count
            // Every packet's bytes, as tcpdump prints them, equal the frame sent.
            let bodies = dump.components(separatedBy: "\n").split { !$0.hasPrefix("\t") }.map { lines in
                lines.map { $0.split(separator: ":", maxSplits: 1).last.map(String.init) ?? "" }
                    .joined().replacingOccurrences(of: " ", with: "")
            }.filter { !$0.isEmpty }
            XCTAssertEqual(bodies.count, packets.count, "one hex dump per packet in \(file)")
            for body in bodies { XCTAssertEqual(body, hex) }
        }
        XCTAssertEqual(total, 100)
    }

    /// On a fresh machine no directory a config names for output exists:
    /// the daemon makes the missing ones (0750, its own user) and the
    /// pipeline starts. Before, the pcap module's open failed with ENOENT and
    /// the pipeline silently did not start.
    func testMissingCaptureDirectoriesAreMadeAndThePipelineStarts() throws {
        let made = captureDirectory + "/made"
        let directory = made + "/by/sluiced"
        _ = try start(modules: """
            [[pipeline.modules]]
            kind = "pcap"
            path = "\(directory)/capture.pcap"
            """)
        for path in [made, made + "/by", directory, daemon!.stateDirectory] {
            var info = stat()
            XCTAssertEqual(stat(path, &info), 0, "\(path) was not made")
            XCTAssertEqual(info.st_mode & S_IFMT, S_IFDIR, path)
            XCTAssertEqual(String(info.st_mode & 0o7777, radix: 8), "750", path)
            XCTAssertEqual(info.st_uid, geteuid(), path)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: directory + "/capture-queue0.pcap"), daemon!.log())
    }

    /// A capture file the pipeline cannot open, though the config check
    /// passed (its directory exists; the file's name is taken by a
    /// directory): the pipeline does not start, and says so with the path
    /// and the reason, in the log at start and in `pipeline.start`'s reply.
    func testACaptureFileThatCannotBeOpenedIsReportedNotSilent() throws {
        let blocked = captureDirectory + "/capture-queue0.pcap"
        try FileManager.default.createDirectory(atPath: blocked, withIntermediateDirectories: true)
        let lab = try Lab.up(queues: 2, prefix: "spd")
        self.lab = lab
        let daemon = try DaemonProcess(extraConfig: DaemonProcess.pipelineConfig(
            pluginDirectory: plugins!.path, interface: lab.appInterface, modules: """
                [[pipeline.modules]]
                kind = "pcap"
                path = "\(captureDirectory)/capture.pcap"
                """))
        self.daemon = daemon
        try daemon.start()
        try waitUntil("the failed start to be logged") { daemon.log().contains("pipeline did not start") }
        let line = daemon.log().split(separator: "\n").first { $0.contains("pipeline did not start") } ?? ""
        XCTAssertTrue(line.contains(blocked), "the log does not name the capture file:\n\(daemon.log())")
        XCTAssertTrue(line.contains("Is a directory"), "the log does not say why:\n\(daemon.log())")
        XCTAssertNotEqual(try pipeline()?["running"], true)

        // pipeline status says so too, until the pipeline starts.
        let failed = try XCTUnwrap(daemon.call("pipeline.status")["result"]?["failed_starts"]?.arrayValue)
        XCTAssertEqual(failed.count, 1, "\(failed)")
        XCTAssertEqual(failed.first?["interface"]?.stringValue, lab.appInterface)
        XCTAssertTrue(failed.first?["error"]?.stringValue?.contains(blocked) == true, "\(failed)")
        let text = try runCommand([DaemonProcess.sluicectlPath, "--socket", daemon.socketPath, "pipeline", "status"])
        XCTAssertEqual(text.status, 0, "\(text)")
        XCTAssertTrue(text.stdout.contains("\(lab.appInterface): not running: the start at "), text.stdout)
        XCTAssertTrue(text.stdout.contains("Is a directory"), text.stdout)
        XCTAssertFalse(text.stdout.contains("no pipeline has run"), text.stdout)

        let reply = try daemon.call("pipeline.start")
        XCTAssertEqual(reply["ok"], false, reply.serialized())
        let message = try XCTUnwrap(reply["error"]?["message"]?.stringValue, reply.serialized())
        XCTAssertTrue(message.contains(blocked) && message.contains("Is a directory"), message)

        // Fixed: the start succeeds and the failure is gone.
        try FileManager.default.removeItem(atPath: blocked)
        XCTAssertEqual(try daemon.call("pipeline.start")["ok"], true)
        XCTAssertEqual(try daemon.call("pipeline.status")["result"]?["failed_starts"]?.arrayValue?.count, 0)
    }

    /// libbpf prints to stderr when an options struct has a size or padding
    /// it does not expect ("bpf_xdp_query_opts has non-zero extra bytes" on
    /// every nic.show and doctor with Debian 12's libbpf 1.1): a start, the
    /// commands that query XDP state, and a stop log nothing from libbpf or libxdp.
    func testStartQueriesAndStopLogNoLibbpfWarning() throws {
        let (lab, daemon) = try start(modules: "")
        let interface = JSONValue.string(lab.appInterface)
        for (command, arguments) in [("nic.show", ["iface": interface]), ("nic.list", [:]), ("doctor", ["iface": interface])] {
            XCTAssertNotNil(try daemon.call(command, arguments)["result"], command)
        }
        let xdp = try daemon.call("nic.show", ["iface": interface])["result"]?["interface"]?["xdp"]
        XCTAssertNotNil(xdp?["program_id"], "nic.show does not see the pipeline's program: \(String(describing: xdp))")
        daemon.stop(keepDirectory: true)
        let log = daemon.log()
        let complaints = log.split(separator: "\n").filter { $0.contains("libbpf") || $0.contains("libxdp") }
        XCTAssertEqual(complaints, [], log)
    }

    func testFilterDropsExactlyTheConfiguredFlow() throws {
        let (lab, _) = try start(modules: """
            [[pipeline.modules]]
            kind = "filter"
            rules = [{ action = "drop", proto = "udp", dport = 5002 }]

            [[pipeline.modules]]
            kind = "count"
            """, interface: "prefilter_protocols = [\"udp\"]")
        let flows = UDPFlows(lab: lab, ports: [5001, 5002, 5003])
        try flows.send(perWorker: 300)
        try waitUntil("1800 packets received") { try self.pipeline()?["totals"]?["rx_packets"] == 1800 }
        try waitUntil("the count module to see the rest") { try self.counter("count", "packets") == 1200 }
        XCTAssertEqual(try pipeline()?["totals"]?["dropped"], 600)
        let rows = try module("count")?["rows"]?.arrayValue ?? []
        XCTAssertEqual(Set(rows.compactMap { $0["dport"]?.stringValue }), ["5001", "5003"])
    }

    func testMalformedFramesAreCountedNotFatal() throws {
        let (lab, daemon) = try start(modules: """
            [[pipeline.modules]]
            kind = "count"
            """)
        let flows = UDPFlows(lab: lab, ports: [5001])
        let good = try flows.frames()[0]
        var badIHL = good
        badIHL[14] = 0x4f  // IHL 15: a 60-byte IPv4 header in a frame that has no room for it
        var shortIHL = good
        shortIHL[14] = 0x43  // IHL 3: shorter than the fixed header
        let truncatedIPv4 = Array(good.prefix(14 + 12))
        let truncatedUDP = Array(good.prefix(14 + 20 + 4))
        try flows.send([badIHL, shortIHL, truncatedIPv4, truncatedUDP], perWorker: 25)
        try waitUntil("200 malformed frames counted") { try self.pipeline()?["totals"]?["malformed"] == 200 }
        XCTAssertEqual(try counter("count", "flows"), 0, "malformed frames make no flows")
        try flows.send(perWorker: 10)
        try waitUntil("the good flow after the bad frames") { try self.counter("count", "packets") == 20 }
        XCTAssertTrue(daemon.isRunning)
    }

    func testReflectSendsFramesBackWithSwappedAddresses() throws {
        let (lab, _) = try start(modules: """
            [[pipeline.modules]]
            kind = "reflect"
            """, interface: "prefilter_protocols = [\"udp\"]")
        let capture = captureDirectory + "/reflected.pcap"
        let tcpdump = Process()
        tcpdump.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        tcpdump.arguments = ["netns", "exec", lab.generatorNamespace, "tcpdump", "-i", lab.generatorInterface,
                             "-Q", "in", "-nn", "-U", "-c", "20", "-w", capture, "udp"]
        let errors = Pipe()
        tcpdump.standardError = errors
        try tcpdump.run()
        defer { if tcpdump.isRunning { tcpdump.terminate() } }
        // tcpdump says so once its capture is open: from then on nothing is
        // missed. Its stderr is read on another thread so the wait keeps its deadline.
        let banner = LockedText()
        let reader = errors.fileHandleForReading
        DispatchQueue.global().async {
            while case let data = reader.availableData, !data.isEmpty { banner.append(String(decoding: data, as: UTF8.self)) }
        }
        try waitUntil("tcpdump to listen") { banner.value.contains("listening on") }
        try UDPFlows(lab: lab, ports: [5001]).send(perWorker: 10)
        try waitUntil("tcpdump to capture 20 reflected frames") { !tcpdump.isRunning }
        let lines = try runCommand(["tcpdump", "-r", capture, "-nn"], check: true).stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 20)
        for line in lines {
            XCTAssertTrue(line.contains("IP \(lab.appAddress).5001 > \(lab.generatorAddress).6001: UDP"), String(line))
        }
        try waitUntil("the pipeline to count 20 transmitted") { try self.pipeline()?["totals"]?["transmitted"] == 20 }
    }

    func testPrefilterLeavesPingToTheKernel() throws {
        let (lab, _) = try start(modules: """
            [[pipeline.modules]]
            kind = "count"
            """, interface: "prefilter_protocols = [\"udp\"]\nprefilter_ports = [5001]")
        let ping = try lab.inGenerator(["ping", "-c", "3", "-i", "0.2", "-W", "2", lab.appAddress])
        XCTAssertEqual(ping.status, 0, "ICMP must still reach the kernel: \(ping)")
        let flows = UDPFlows(lab: lab, ports: [5001, 5009])
        try flows.send(perWorker: 100)
        try waitUntil("the matching flow in Sluice") { try self.counter("count", "packets") == 200 }
        XCTAssertEqual(try counter("count", "flows"), 1, "port 5009 goes to the kernel")
    }

    func testPluginMappingEndToEndAndWithoutIt() throws {
        // Channel i → queue i + 2 on a 4-queue veth; the generator sends on queues 2-3.
        try plugins!.compile(testPluginSource, as: "libsluice_veth_test.so")
        let (lab, daemon) = try start(queues: 4, xpsQueues: [2, 3], modules: """
            [[pipeline.modules]]
            kind = "count"
            """, interface: "channels = [0, 1]\nprefilter_protocols = [\"udp\"]", metrics: true)
        let status = try XCTUnwrap(daemon.call("pipeline.status")["result"]?["pipelines"]?.arrayValue?.first)
        XCTAssertEqual(status["plugin"], "veth_test")
        XCTAssertEqual(status["statistics"]?["sockets"]?.arrayValue?.map { $0["queue"] }, [2, 3])
        let flows = UDPFlows(lab: lab, ports: [7000])
        try flows.send(perWorker: 500)
        try waitUntil("1000 packets through queues 2-3") { try self.counter("count", "packets") == 1000 }
        // Metrics name each socket by the channel and the queue the mapping
        // in effect gave it: channel 0 reads queue 2, channel 1 queue 3.
        let address = try XCTUnwrap(daemon.call("status")["result"]?["metrics"]?.stringValue)
        let port = try XCTUnwrap(UInt16(address.split(separator: ":").last ?? ""), address)
        let metrics = try PrometheusExposition(scrape(port: port).body)
        let iface = lab.appInterface
        let perSocket = [("0", "2"), ("1", "3")].map { channel, queue in
            metrics.value("sluice_rx_packets_total", ["iface": iface, "channel": channel, "queue": queue]) ?? -1
        }
        XCTAssertEqual(perSocket.reduce(0, +), 1000, "\(perSocket)")
        XCTAssertNil(metrics.value("sluice_rx_packets_total", ["iface": iface, "channel": "0", "queue": "0"]))
        XCTAssertEqual(metrics.value("sluice_xdp_redirected_total", ["iface": iface, "queue": "2"]).map { $0 > 0 }, true)

        // Without the plugin the same configuration binds queues 0-1 and
        // receives nothing of that traffic.
        XCTAssertEqual(try daemon.call("pipeline.stop")["ok"], true)
        unlink(plugins!.file("libsluice_veth_test.so"))
        XCTAssertEqual(try daemon.call("plugins.reload")["ok"], true)
        let restarted = try daemon.call("pipeline.start")
        XCTAssertEqual(restarted["ok"], true, restarted.serialized())
        XCTAssertEqual(try pipeline()?["plugin"], "generic")
        try flows.send(perWorker: 500)
        try waitUntil("the XDP program to see the traffic on queues 2-3") {
            let xdp = try self.pipeline()?["statistics"]?["xdp"]?.arrayValue ?? []
            return xdp.filter { ($0["queue"]?.integer(as: Int.self) ?? 0) >= 2 }
                .reduce(0) { $0 + ($1["passed"]?.integer(as: Int.self) ?? 0) } >= 1000
        }
        XCTAssertEqual(try pipeline()?["totals"]?["rx_packets"], 0)
    }

    /// A plugin that numbers queues like mlx5 before Linux 6.1: zero-copy on
    /// channel + 2, copy mode on the channel's own queue. veth refuses
    /// zero-copy, so an `auto` bind falls back to copy mode; the sockets, the
    /// XSKMAP keys, `plugins.explain` and `steer.add` during the run must all
    /// use the copy-mode answer, and the traffic on queues 0-1 arrives.
    /// Before, the fallback sockets stayed on queues 2-3 and received nothing.
    func testAutoFallbackIsMappedAgainForCopyModeEverywhere() throws {
        let factsLog = plugins!.path + "-facts.log"
        defer { unlink(factsLog) }
        try plugins!.compile(testPluginSource, as: "libsluice_veth_test.so", defines: ["SPLIT_BY_MODE", "FACTS_LOG=\"\(factsLog)\""])
        let (lab, daemon) = try start(queues: 4, xpsQueues: [0, 1], modules: """
            [[pipeline.modules]]
            kind = "count"
            """, interface: "channels = [0, 1]\nbind_mode = \"auto\"\nprefilter_protocols = [\"udp\"]")
        let status = try XCTUnwrap(daemon.call("pipeline.status")["result"]?["pipelines"]?.arrayValue?.first)
        XCTAssertEqual(status["plugin"], "veth_test")
        let sockets = try XCTUnwrap(status["statistics"]?["sockets"]?.arrayValue)
        XCTAssertEqual(sockets.map { $0["queue"] }, [0, 1], status.serialized())
        XCTAssertEqual(sockets.map { $0["xskmap_key"] }, [0, 1])
        XCTAssertEqual(sockets.map { $0["zero_copy"] }, [false, false])
        XCTAssertTrue(sockets[1]["fallback_reason"]?.stringValue?.hasSuffix(
            "bound in copy mode on queue 1, XSKMAP key 1 (the copy-mode mapping)") ?? false, status.serialized())
        XCTAssertEqual(status["mappings"]?.arrayValue?.map { $0["steer_queue"] }, [0, 1])

        let flows = UDPFlows(lab: lab, ports: [7100])
        try flows.send(perWorker: 500)
        try waitUntil("1000 packets through queues 0-1") { try self.counter("count", "packets") == 1000 }

        // The plugin was asked for both modes, with the XDP state the sockets run in.
        let questions = try String(contentsOfFile: factsLog, encoding: .utf8).split(separator: "\n")
        XCTAssertTrue(questions.contains("map channel=1 zerocopy_requested=1 xdp_attached=1 xdp_mode=2 zerocopy_sockets=0 rx_channels=4"), "\(questions)")
        XCTAssertTrue(questions.contains("map channel=1 zerocopy_requested=0 xdp_attached=1 xdp_mode=2 zerocopy_sockets=0 rx_channels=4"), "\(questions)")

        // During the run, the pipeline's mapping answers.
        let interface = JSONValue.string(lab.appInterface)
        let explainReply = try daemon.call("plugins.explain", ["iface": interface])
        let explained = try XCTUnwrap(explainReply["result"], explainReply.serialized())
        XCTAssertEqual(explained["source"], "pipeline", explained.serialized())
        XCTAssertEqual(explained["mappings"]?.arrayValue?.map { $0["bind_queue"] }, [0, 1], explained.serialized())
        XCTAssertEqual(explained["socket_modes"], ["0": "copy", "1": "copy"])
        let rule = try daemon.call("steer.add", [
            "iface": interface, "flow_type": "udp4", "dst_port": 7100, "channel": 1, "dry_run": true,
        ])
        XCTAssertEqual(rule["result"]?["queue"], 1, rule.serialized())
        XCTAssertEqual(rule["result"]?["mapping_source"], "pipeline")
        XCTAssertEqual(rule["result"]?["socket_mode"], "copy")
        XCTAssertTrue(rule["result"]?["ethtool_command"]?.stringValue?.hasSuffix("action 1") ?? false, rule.serialized())

        // Naming another plugin asks it about the live facts, which now include
        // the XDP program attached (before, fresh facts always said none).
        let live = try XCTUnwrap(daemon.call("plugins.explain", ["iface": interface, "channel": 0, "plugin": "generic"])["result"])
        XCTAssertEqual(live["source"], "live_facts", live.serialized())
        XCTAssertEqual(live["facts"]?["xdp_attached"], true, live.serialized())
        XCTAssertEqual(live["facts"]?["xdp_mode"], "native", live.serialized())

        // A channel the pipeline does not read is a regular queue: the plugin
        // is asked with live facts, for copy mode (no socket of ours is there).
        let unbound = try daemon.call("steer.add", [
            "iface": interface, "flow_type": "udp4", "dst_port": 7101, "channel": 3, "dry_run": true,
        ])
        XCTAssertEqual(unbound["result"]?["queue"], 3, unbound.serialized())
        XCTAssertEqual(unbound["result"]?["mapping_source"], "live_facts")
        // plugins.explain gives the same answer for it, from the same facts:
        // not the zero-copy answer (queue 5) no socket uses.
        let unboundReply = try daemon.call("plugins.explain", ["iface": interface, "channel": 3])
        let unboundExplained = try XCTUnwrap(unboundReply["result"], unboundReply.serialized())
        XCTAssertEqual(unboundExplained["source"], "live_facts", unboundExplained.serialized())
        XCTAssertEqual(unboundExplained["selection"]?["plugin"]?["name"], "veth_test", unboundExplained.serialized())
        XCTAssertEqual(unboundExplained["mappings"]?.arrayValue?.map { $0["bind_queue"] }, [3], unboundExplained.serialized())
        XCTAssertEqual(unboundExplained["facts"]?["zero_copy_requested"], false, unboundExplained.serialized())

        // After the stop the live facts answer again (the program is gone).
        XCTAssertEqual(try daemon.call("pipeline.stop")["ok"], true)
        let after = try XCTUnwrap(daemon.call("plugins.explain", ["iface": interface, "channel": 1])["result"])
        XCTAssertEqual(after["source"], "live_facts", after.serialized())
        XCTAssertEqual(after["facts"]?["xdp_attached"], false, after.serialized())
    }

    /// XDP in skb mode: sockets bind in copy mode from the start, with the
    /// plugin's answer for skb mode (the channel's own queue here).
    func testSkbModeBindsTheCopyModeMapping() throws {
        try plugins!.compile(testPluginSource, as: "libsluice_veth_test.so", defines: ["SPLIT_BY_MODE"])
        let (lab, daemon) = try start(queues: 4, xpsQueues: [0, 1], modules: """
            [[pipeline.modules]]
            kind = "count"
            """, interface: "channels = [0, 1]\nattach_mode = \"skb\"\nprefilter_protocols = [\"udp\"]")
        let status = try XCTUnwrap(daemon.call("pipeline.status")["result"]?["pipelines"]?.arrayValue?.first)
        let sockets = try XCTUnwrap(status["statistics"]?["sockets"]?.arrayValue)
        XCTAssertEqual(sockets.map { $0["queue"] }, [0, 1], status.serialized())
        XCTAssertEqual(sockets.map { $0["fallback_reason"] ?? .null }, [.null, .null], "copy mode is chosen, not fallen back to")
        let flows = UDPFlows(lab: lab, ports: [7200])
        try flows.send(perWorker: 500)
        try waitUntil("1000 packets through queues 0-1") { try self.counter("count", "packets") == 1000 }
        let explained = try XCTUnwrap(daemon.call("plugins.explain", ["iface": .string(lab.appInterface)])["result"])
        XCTAssertEqual(explained["socket_modes"], ["0": "skb", "1": "skb"], explained.serialized())
    }

    /// A queue at or above the receive channels exists only as a zero-copy
    /// AF_XDP queue; a rule to one that no socket reads would make the NIC
    /// drop its traffic, so steer.add refuses it (a dry run warns).
    func testSteeringToAQueueNobodyReadsIsRefused() throws {
        let (lab, daemon) = try start(modules: "")
        let rule: [String: JSONValue] = ["iface": .string(lab.appInterface), "flow_type": "udp4", "dst_port": 7300, "queue": 3]
        var dryRun = rule
        dryRun["dry_run"] = true
        let warned = try daemon.call("steer.add", dryRun)
        XCTAssertEqual(warned["ok"], true, warned.serialized())
        XCTAssertTrue(warned["result"]?["warning"]?.stringValue?.contains(
            "queue 3 of \(lab.appInterface) is beyond its 2 receive channels") ?? false, warned.serialized())
        let refused = try daemon.call("steer.add", rule)
        XCTAssertEqual(refused["error"]?["code"], "invalid_argument", refused.serialized())
        XCTAssertTrue(refused["error"]?["message"]?.stringValue?.contains("no socket is bound to it, so the NIC would drop") ?? false,
                      refused.serialized())
        // Queues the channels cover are regular queues: no warning.
        var regular = dryRun
        regular["queue"] = 1
        XCTAssertNil(try daemon.call("steer.add", regular)["result"]?["warning"])
    }

    /// Someone changes the channels under a running pipeline (ethtool -L):
    /// the pipeline notices (ethtool netlink), derives its map again from live
    /// facts and binds every channel there is now; it never runs on a stale map.
    func testAChannelChangeUnderARunningPipelineBindsItAgain() throws {
        let lab = try Lab.up(queues: 4, prefix: "spd")
        self.lab = lab
        // veth attaches XDP only with at least as many rx queues as its peer has tx queues.
        try lab.inGenerator(["ethtool", "-L", lab.generatorInterface, "rx", "2", "tx", "2"], check: true)
        try lab.inApp(["ethtool", "-L", lab.appInterface, "rx", "2", "tx", "2"], check: true)
        let daemon = try DaemonProcess(extraConfig: DaemonProcess.pipelineConfig(
            pluginDirectory: plugins!.path, interface: lab.appInterface, modules: """
                [[pipeline.modules]]
                kind = "count"
                """, interfaceOptions: "prefilter_protocols = [\"udp\"]"))
        self.daemon = daemon
        try daemon.start()
        try daemon.showingLogOnFailure { try daemon.waitForPipeline() }
        XCTAssertEqual(try self.boundQueues(), [0, 1])

        try lab.inApp(["ethtool", "-L", lab.appInterface, "rx", "4", "tx", "4"], check: true)
        try daemon.showingLogOnFailure {
            try waitUntil("the pipeline bound on all 4 channels") { try self.boundQueues() == [0, 1, 2, 3] }
        }
        XCTAssertTrue(daemon.log().contains("pipeline bound again on a new map"), daemon.log())
        XCTAssertTrue(daemon.log().contains("the channels of \(lab.appInterface) changed (now rx 4, tx 4, combined 0)"), daemon.log())
        XCTAssertEqual(try pipeline()?["running"], true)
        XCTAssertEqual(try lab.inApp(["ip", "-d", "link", "show", "dev", lab.appInterface], check: true).stdout
            .components(separatedBy: "prog/xdp").count - 1, 1, "one program, the new pipeline's")

        let flows = UDPFlows(lab: lab, ports: [7400])
        try flows.send(perWorker: 500)
        try waitUntil("1000 packets on the new sockets") { try self.counter("count", "packets") == 1000 }
    }

    /// A channel change whose notification is lost: the daemon (in a network
    /// namespace of the test's own) is stopped while hundreds of ethtool
    /// notifications about another veth overrun its monitor's socket, then
    /// the channels of its interface change and it is let go. No
    /// notification tells it; the periodic check sees other rx queues than
    /// the pipeline bound at two checks in a row and binds it again.
    func testAChannelChangeWhoseNotificationWasLostIsFoundByTheCheck() throws {
        let lab = try Lab.up(queues: 4, appInNamespace: true, prefix: "spd")
        self.lab = lab
        let namespace = try XCTUnwrap(lab.appNamespace)
        try lab.inGenerator(["ethtool", "-L", lab.generatorInterface, "rx", "2", "tx", "2"], check: true)
        try lab.inApp(["ethtool", "-L", lab.appInterface, "rx", "2", "tx", "2"], check: true)
        // Goes with the namespace when the lab is taken down.
        let flood = uniqueName("sflood")
        try lab.inApp(["ip", "link", "add", flood, "numrxqueues", "2", "numtxqueues", "2", "type", "veth",
                       "peer", "name", flood + "p", "numrxqueues", "2", "numtxqueues", "2"], check: true)
        let daemon = try DaemonProcess(extraConfig: DaemonProcess.pipelineConfig(
            pluginDirectory: plugins!.path, interface: lab.appInterface, modules: """
                [[pipeline.modules]]
                kind = "count"
                """, interfaceOptions: "prefilter_protocols = [\"udp\"]"))
        self.daemon = daemon
        try daemon.start(launcher: ["/usr/bin/env", "ip", "netns", "exec", namespace])
        try daemon.showingLogOnFailure { try daemon.waitForPipeline() }
        XCTAssertEqual(try self.boundQueues(), [0, 1])

        daemon.signal(SIGSTOP)
        do {
            defer { daemon.signal(SIGCONT) }
            try lab.inApp(["sh", "-c", "for i in $(seq 400); do ethtool -L \(flood) rx 1 tx 1 && ethtool -L \(flood) rx 2 tx 2 || exit 1; done"],
                          check: true)
            try lab.inApp(["ethtool", "-L", lab.appInterface, "rx", "4", "tx", "4"], check: true)
        }
        try daemon.showingLogOnFailure {
            try waitUntil("the pipeline bound on all 4 channels", timeout: .seconds(20)) { try self.boundQueues() == [0, 1, 2, 3] }
        }
        XCTAssertTrue(daemon.log().contains("the rx queues of \(lab.appInterface) changed (2 → 4) and no channel notification said so"),
                      daemon.log())
        XCTAssertFalse(daemon.log().contains("the channels of \(lab.appInterface) changed"), "the notification was lost")
        let flows = UDPFlows(lab: lab, ports: [7450])
        try flows.send(perWorker: 500)
        try waitUntil("1000 packets on the new sockets") { try self.counter("count", "packets") == 1000 }
    }

    /// Someone detaches Sluice's XDP program under a running pipeline
    /// (`bpftool link detach`: the BPF link keeps anyone from replacing it,
    /// but not from detaching it): its sockets would see nothing, so the
    /// pipeline notices (rtnetlink), attaches a new program and binds again.
    func testDetachingSluicesProgramUnderARunningPipelineBindsItAgain() throws {
        let (lab, daemon) = try start(modules: """
            [[pipeline.modules]]
            kind = "count"
            """, interface: "prefilter_protocols = [\"udp\"]")
        let first = try XCTUnwrap(programID())
        let links = try SluiceTestSupport.run(["bpftool", "-j", "link", "show"], check: true).stdout
        let list = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(links.utf8)) as? [[String: Any]], links)
        let link = try XCTUnwrap(list.first { ($0["prog_id"] as? Int) == first }?["id"] as? Int,
                                 "no BPF link holds program \(first): \(links)")
        try SluiceTestSupport.run(["bpftool", "link", "detach", "id", String(link)], check: true)

        try daemon.showingLogOnFailure {
            try waitUntil("the pipeline on a program of its own again") {
                guard let now = try self.programID(), now != first else { return false }
                return try self.pipeline()?["running"] == true
            }
        }
        XCTAssertTrue(daemon.log().contains("Sluice's XDP program is no longer attached to \(lab.appInterface)"), daemon.log())
        XCTAssertTrue(daemon.log().contains("pipeline bound again on a new map"), daemon.log())
        let attached = try lab.inApp(["ip", "-d", "link", "show", "dev", lab.appInterface], check: true).stdout
        XCTAssertTrue(attached.contains("prog/xdp id \(try XCTUnwrap(programID()))"), attached)

        let flows = UDPFlows(lab: lab, ports: [7500])
        try flows.send(perWorker: 500)
        try waitUntil("1000 packets on the new sockets") { try self.counter("count", "packets") == 1000 }
    }

    /// The link goes down and up under a running pipeline (what a driver
    /// reset looks like from outside): the queues, the program and the
    /// sockets' bindings stay, so the map is not stale and the pipeline keeps
    /// it — it does not bind again, and traffic after the reset arrives.
    func testLinkDownAndUpKeepsTheMapAndTheTraffic() throws {
        let (lab, daemon) = try start(modules: """
            [[pipeline.modules]]
            kind = "count"
            """, interface: "prefilter_protocols = [\"udp\"]")
        let program = try XCTUnwrap(programID())
        for state in ["down", "up"] {
            try lab.inApp(["ip", "link", "set", "dev", lab.appInterface, state], check: true)
        }
        try waitUntil("both ends of the link up again") {
            try lab.inApp(["cat", "/sys/class/net/\(lab.appInterface)/operstate"]).stdout.hasPrefix("up")
                && lab.inGenerator(["cat", "/sys/class/net/\(lab.generatorInterface)/operstate"]).stdout.hasPrefix("up")
        }
        let flows = UDPFlows(lab: lab, ports: [7600])
        try flows.send(perWorker: 500)
        try daemon.showingLogOnFailure {
            try waitUntil("1000 packets after the link came back") { try self.counter("count", "packets") == 1000 }
        }
        XCTAssertEqual(try programID(), program)
        XCTAssertFalse(daemon.log().contains("pipeline bound again"), daemon.log())
    }

    /// The interface vanishes under a running pipeline: the pipeline stops,
    /// says why, and the daemon keeps serving.
    func testRemovingTheInterfaceStopsThePipelineSayingWhy() throws {
        let (lab, daemon) = try start(modules: "")
        try SluiceTestSupport.run(lab.appCommand(["ip", "link", "del", lab.appInterface]), check: true)
        try waitUntil("the pipeline stopped with a reason") {
            try self.pipeline()?["stop_reason"]?.stringValue?.contains(lab.appInterface) ?? false
        }
        XCTAssertEqual(try pipeline()?["running"], false)
        XCTAssertEqual(try daemon.call("status")["ok"], true)
        let status = try SluiceTestSupport.run(
            [DaemonProcess.sluicectlPath, "pipeline", "status", "--socket", daemon.socketPath], check: true)
        XCTAssertTrue(status.stdout.contains("stopped because \(lab.appInterface)"), status.stdout)
    }

    func testReloadIsBusyWhileAPipelineHoldsItsPlugin() throws {
        let (_, daemon) = try start(modules: "")
        XCTAssertEqual(try daemon.call("plugins.reload")["error"]?["code"], "busy")
        XCTAssertEqual(try daemon.call("channels.set", ["iface": .string(lab!.appInterface), "rx": 1])["error"]?["code"], "busy")
        XCTAssertEqual(try daemon.call("pipeline.stop")["ok"], true)
        XCTAssertEqual(try daemon.call("plugins.reload")["ok"], true)
    }

    func testStopAndKillNineLeaveNoProgram() throws {
        let (lab, daemon) = try start(modules: "")
        XCTAssertTrue(try hasXDPProgram(lab))
        XCTAssertEqual(try pipeline()?["running"], true)
        XCTAssertEqual(try daemon.call("pipeline.stop")["ok"], true)
        XCTAssertFalse(try hasXDPProgram(lab), "pipeline.stop detaches the program")
        // stats.get shares snapshots for 20 ms, but never across a stop or start.
        XCTAssertEqual(try pipeline()?["running"], false)
        XCTAssertEqual(try daemon.call("pipeline.start")["ok"], true)
        XCTAssertEqual(try pipeline()?["running"], true)
        XCTAssertTrue(try hasXDPProgram(lab))
        daemon.signal(SIGKILL)
        try daemon.waitForExit()
        try waitUntil("the kernel to drop the BPF link of the killed daemon") { try !self.hasXDPProgram(lab) }
        try daemon.start()
        try waitUntil("the pipeline to run again") { try self.pipeline()?["running"] == true }
        daemon.signal(SIGTERM)
        XCTAssertEqual(try daemon.waitForExit(), 0)
        XCTAssertFalse(try hasXDPProgram(lab))
    }
}

final class LockedText: Sendable {
    private let text = Mutex("")
    func append(_ more: String) { text.withLock { $0 += more } }
    var value: String { text.withLock { $0 } }
}
