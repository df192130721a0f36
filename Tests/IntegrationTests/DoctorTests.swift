import Foundation
import SluiceControl
import SluiceTestSupport
import XCTest

/// `doctor` and `trace.subscribe` against the real daemon on a lab veth:
/// the seed's failure (socket on channel 1, traffic on queue 0), a healthy
/// set-up, and a real XDP redirect failure seen through the trace stream.
final class DoctorTests: XCTestCase {
    private var lab: Lab?
    private var daemon: DaemonProcess?
    private var plugins: PluginDirectory?

    override func setUpWithError() throws {
        try Privilege.require()
        let plugins = try PluginDirectory.withShippedPlugins()
        self.plugins = plugins
    }

    override func tearDown() {
        daemon?.stop()
        try? lab?.down()
        plugins?.remove()
    }

    private func start(_ lab: Lab, interface: String, beforeStart: () throws -> Void = {}) throws -> DaemonProcess {
        self.lab = lab
        try beforeStart()
        let daemon = try DaemonProcess(extraConfig: DaemonProcess.pipelineConfig(
            pluginDirectory: plugins!.path, interface: lab.appInterface, mode: "inline", interfaceOptions: interface))
        self.daemon = daemon
        try daemon.start()
        try daemon.waitForPipeline()
        return daemon
    }

    /// The XDP program's per-queue counters: queue → redirected + passed + failed.
    private func programCounters(_ daemon: DaemonProcess) throws -> [Int: Int] {
        let xdp = try daemon.call("stats.get")["result"]?["pipelines"]?.arrayValue?.first?["statistics"]?["xdp"]?.arrayValue ?? []
        var counts: [Int: Int] = [:]
        for queue in xdp {
            guard let index = queue["queue"]?.integer(as: Int.self) else { continue }
            counts[index] = ["redirected", "passed", "redirect_failed"].reduce(0) {
                $0 + (queue[$1]?.integer(as: Int.self) ?? 0)
            }
        }
        return counts
    }

    /// The daemon's own tracefs instance (one per sluiced process).
    private func traceInstance(_ daemon: DaemonProcess) throws -> String {
        "/sys/kernel/tracing/instances/sluice-\(try XCTUnwrap(daemon.pid))"
    }

    private func doctor(_ daemon: DaemonProcess, _ iface: String) throws -> [JSONValue] {
        let reply = try daemon.call("doctor", ["iface": .string(iface), "sample_ms": 300])
        XCTAssertEqual(reply["ok"], true, reply.serialized())
        return reply["result"]?["findings"]?.arrayValue ?? []
    }

    func testSeedSocketOnChannelOneWhileTrafficArrivesOnQueueZero() throws {
        let lab = try Lab.up(queues: 2, xpsQueues: [0], prefix: "sdoc")
        let daemon = try start(lab, interface: "channels = [1]")
        let flows = UDPFlows(lab: lab, ports: [6001])
        try flows.send(perWorker: 250)
        try waitUntil("500 packets counted by the XDP program on queue 0") {
            try self.programCounters(daemon)[0] ?? 0 >= 500
        }
        let findings = try doctor(daemon, lab.appInterface)
        let first = try XCTUnwrap(findings.first, "no findings")
        XCTAssertEqual(first["severity"], "error", findings.map { $0.serialized() }.joined(separator: "\n"))
        XCTAssertEqual(first["queue"], 0)
        let title = first["title"]?.stringValue ?? ""
        XCTAssertTrue(title.hasPrefix("queue 0 receives ") && title.hasSuffix("packets but no socket is bound to it"), title)
        let evidence = first["evidence"]?.arrayValue?.compactMap(\.stringValue) ?? []
        XCTAssertTrue(evidence.contains("socket for channel 1 (queue 1) got 0"), "\(evidence)")
        XCTAssertTrue(evidence.contains { $0.hasPrefix("XDP program, queue 0: passed ") }, "\(evidence)")
        XCTAssertTrue(evidence.contains { $0.hasPrefix("driver, rx queue 0: xdp_packets ") }, "\(evidence)")
        let fix = first["fix"]?.stringValue ?? ""
        XCTAssertTrue(fix.contains("channels = [1, 0]"), fix)
        XCTAssertTrue(fix.contains("sluicectl steer add \(lab.appInterface) flow-type udp4 dst-port PORT channel 1"), fix)

        // The one screen: exit 0 despite the error, the finding and its fix, no colour off a tty.
        let output = try runCommand([DaemonProcess.sluicectlPath, "--socket", daemon.socketPath, "doctor",
                                     lab.appInterface, "--sample", "0"])
        XCTAssertEqual(output.status, 0, output.stderr)
        XCTAssertTrue(output.stdout.contains("ERROR   \(lab.appInterface): queue 0 receives"), output.stdout)
        XCTAssertTrue(output.stdout.contains("fix: bind channel 0"), output.stdout)
        XCTAssertFalse(output.stdout.contains("\u{1B}["), "colour only on a tty")
        if ProcessInfo.processInfo.environment["SLUICE_DOCTOR_PRINT"] == "1" { print(output.stdout) }
    }

    func testHealthySetupGetsNoWarnings() throws {
        let lab = try Lab.up(queues: 2, prefix: "sdoc")
        let daemon = try start(lab, interface: "channels = [0, 1]")
        let flows = UDPFlows(lab: lab, ports: [6002])
        try flows.send(perWorker: 200)
        try waitUntil("both queues' sockets received traffic") {
            let sockets = try daemon.call("stats.get")["result"]?["pipelines"]?.arrayValue?.first?["statistics"]?["sockets"]?.arrayValue ?? []
            return sockets.count == 2 && sockets.allSatisfy { ($0["rx_packets"]?.integer(as: Int.self) ?? 0) >= 200 }
        }
        let findings = try doctor(daemon, lab.appInterface)
        let bad = findings.filter { $0["severity"] == "warning" || $0["severity"] == "error" }
        XCTAssertEqual(bad.count, 0, bad.map { $0.serialized() }.joined(separator: "\n"))
        XCTAssertEqual(findings.last?["severity"], "ok", findings.map { $0.serialized() }.joined(separator: "\n"))
        // veth has no ntuple filters: a note, not a failure.
        XCTAssertTrue(findings.contains { $0["severity"] == "info" && ($0["title"]?.stringValue ?? "").hasPrefix("no ntuple rules") })
    }

    /// Frames longer than a 2048-byte UMEM frame make the socket refuse
    /// them (ENOSPC): bpf_redirect_map fails in the kernel, and the
    /// xdp:xdp_redirect_err tracepoint fires for Sluice's interface. The
    /// prefilter takes ICMP only, so ARP still reaches the kernel and ping
    /// can send its 2600-byte echo requests. Without multi-buffer (which
    /// would take them as chains) and with the MTU raised behind the running
    /// pipeline's back: a pipeline started at that MTU is refused instead.
    func testRedirectFailureShowsUpAsATraceEventAndInDoctor() throws {
        let lab = try Lab.up(queues: 2, prefix: "sdoc")
        let daemon = try start(lab, interface: "prefilter_protocols = [\"icmp\"]\nmulti_buffer = \"off\"")
        try runCommand(["ip", "link", "set", "dev", lab.appInterface, "mtu", "3000"], check: true)
        try lab.inGenerator(["ip", "link", "set", "dev", lab.generatorInterface, "mtu", "3000"], check: true)
        let instance = try traceInstance(daemon)
        do {
            let client = try daemon.client()
            defer { client.close() }
            let reply = try client.call("trace.subscribe", arguments: ["iface": .string(lab.appInterface)])
            XCTAssertEqual(reply["ok"], true, reply.serialized())
            let events = reply["result"]?["events"]?.arrayValue?.compactMap(\.stringValue) ?? []
            XCTAssertTrue(events.contains("xdp_redirect_err"), "\(events)")
            XCTAssertTrue(FileManager.default.fileExists(atPath: instance), "Sluice's tracefs instance exists while subscribed")

            // Fails (the requests never arrive): what matters is that they were sent.
            let ping = try lab.inGenerator(["ping", "-c", "3", "-i", "0.2", "-W", "1", "-s", "2600", "-M", "do", lab.appAddress])
            var failure: JSONValue?
            var seen: [String] = []
            let deadline = Date().addingTimeInterval(20)
            while failure == nil, Date() < deadline, let line = try client.readLine() {
                if seen.count < 5 { seen.append(line) }
                guard let event = try? JSONValue.parse(Array(line.utf8)), event["event"] == "trace",
                    let data = event["data"]
                else { continue }
                XCTAssertEqual(event["id"], reply["id"])
                if data["event"] == "lost" { continue }
                XCTAssertEqual(data["iface"], .string(lab.appInterface), "only the subscribed interface: \(line)")
                if data["event"] == "xdp_redirect_err" || data["event"] == "xdp_exception" { failure = data }
            }
            let stats = try daemon.call("stats.get").serialized()
            let event = try XCTUnwrap(failure, "no xdp failure event within 20 s; \(seen); \(ping); \(stats)")
            XCTAssertEqual(event["err"], JSONValue(-Int(ENOSPC)), event.serialized())
            XCTAssertEqual(event["action"], "REDIRECT")
            XCTAssertNotNil(event["prog_id"]?.integer(as: Int.self))
            XCTAssertTrue((event["raw"]?.stringValue ?? "").contains("xdp_redirect_err"))

            // doctor reports the recent failures (this subscription kept them).
            let findings = try doctor(daemon, lab.appInterface)
            let traced = findings.first { ($0["title"]?.stringValue ?? "").contains("xdp:xdp_redirect_err event(s)") }
            XCTAssertEqual(traced?["severity"], "error", findings.map { $0.serialized() }.joined(separator: "\n"))
            XCTAssertTrue(traced?["fix"]?.stringValue?.contains("mtu 1500") ?? false)
        }
        // The connection closed: the last subscriber left, the instance is gone.
        try waitUntil("the tracefs instance to be removed") { !FileManager.default.fileExists(atPath: instance) }

        // sluicectl trace prints the event and stops after --count.
        let sluicectl = Process()
        sluicectl.executableURL = URL(fileURLWithPath: DaemonProcess.sluicectlPath)
        sluicectl.arguments = ["--socket", daemon.socketPath, "trace", lab.appInterface, "--count", "1",
                               "--events", "xdp_redirect_err"]
        let output = Pipe()
        sluicectl.standardOutput = output
        try sluicectl.run()
        defer { if sluicectl.isRunning { sluicectl.terminate() } }
        try waitUntil("sluicectl trace to subscribe") { FileManager.default.fileExists(atPath: instance) }
        try lab.inGenerator(["ping", "-c", "2", "-i", "0.2", "-W", "1", "-s", "2600", "-M", "do", lab.appAddress])
        try waitUntil("sluicectl trace to print one event and exit") { !sluicectl.isRunning }
        let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(sluicectl.terminationStatus, 0, printed)
        XCTAssertTrue(printed.contains("xdp:xdp_redirect_err \(lab.appInterface) action=REDIRECT"), printed)
        XCTAssertTrue(printed.contains("err=-\(ENOSPC)"), printed)
    }

    func testTraceRejectsUnknownEventsByName() throws {
        let lab = try Lab.up(queues: 2, prefix: "sdoc")
        let daemon = try start(lab, interface: "")
        let reply = try daemon.call("trace.subscribe", ["events": ["xdp_nonsense"]])
        XCTAssertEqual(reply["ok"], false)
        XCTAssertTrue(reply["error"]?["message"]?.stringValue?.contains("xdp_nonsense") ?? false, reply.serialized())
        let bad = try daemon.call("trace.subscribe", ["events": ["../../x"]])
        XCTAssertEqual(bad["error"]?["code"], "invalid_argument", bad.serialized())
        let missing = try daemon.call("trace.subscribe", ["iface": "sdocnothere"])
        XCTAssertEqual(missing["error"]?["code"], "not_found", missing.serialized())
        XCTAssertTrue(missing["error"]?["message"]?.stringValue?.contains("sdocnothere") ?? false, missing.serialized())

        // An explicit unsubscribe gives the events back at once; an instance a
        // dead sluiced left behind is removed on the way.
        let instance = try traceInstance(daemon)
        let finished = Process()
        finished.executableURL = URL(fileURLWithPath: "/bin/true")
        try finished.run()
        finished.waitUntilExit()
        let stale = "/sys/kernel/tracing/instances/sluice-\(finished.processIdentifier)"
        XCTAssertEqual(mkdir(stale, 0o700), 0, String(cString: strerror(errno)))
        defer { rmdir(stale) }
        let client = try daemon.client()
        defer { client.close() }
        XCTAssertEqual(try client.call("trace.subscribe", arguments: ["events": ["xdp_exception"]])["ok"], true)
        XCTAssertTrue(FileManager.default.fileExists(atPath: instance))
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale), "the dead process's instance is removed")
        XCTAssertEqual(try client.call("trace.unsubscribe")["result"]?["unsubscribed"], true)
        try waitUntil("the tracefs instance to be removed") {
            !FileManager.default.fileExists(atPath: instance)
        }
        XCTAssertEqual(try client.call("trace.unsubscribe")["result"]?["unsubscribed"], false)
    }
}
