import Foundation
import SluiceControl
import SluiceTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// NIC control, the journal and the data path on a second real driver,
/// virtio_net, in `tools/vmlab`'s guest: combined channels (ethtool -L),
/// native XDP, AF_XDP in copy mode only (zero-copy binds fail with
/// EOPNOTSUPP under QEMU), no ntuple, no RSS table. Traffic comes from the
/// guest's second virtio NIC through the host's bridge. `ethtool` is the
/// oracle. Outside the VM lab every test skips (fails with SLUICE_REQUIRE_VIRTIO=1).
final class VirtioNetTests: LabDaemonTestCase {
    override class func makeLab() throws -> Lab { try Lab.adopt(VirtioNICs.require(), prefix: "svio") }

    private func channels() throws -> EthtoolChannels { try EthtoolChannels(app) }

    /// The rx queues the kernel has (sysfs), which XDP may raise above the channels.
    private func realRxQueues() throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: "/sys/class/net/\(app)/queues").filter { $0.hasPrefix("rx-") }.count
    }

    private func setCombined(_ count: Int) throws {
        if try channels().current["combined"] != count {
            try runCommand(["ethtool", "-L", app, "combined", String(count)], check: true)
        }
    }

    private func ok(_ reply: JSONValue, file: StaticString = #filePath, line: UInt = #line) -> JSONValue {
        XCTAssertEqual(reply["ok"], true, reply.serialized(), file: file, line: line)
        return reply["result"] ?? .null
    }

    /// A daemon (replacing the unstarted one) with more config, started.
    private func startDaemon(_ extraConfig: String) throws {
        daemon.stop()
        daemon = try DaemonProcess(extraConfig: extraConfig)
        try daemon.start()
    }

    /// The daemon runs one pipeline on the device under test.
    /// `readsEveryQueue`: its sockets read every rx queue the interface has
    /// with the program attached (the default channels do).
    private func startPipeline(mode: String, interfaceOptions: String, readsEveryQueue: Bool = true) throws {
        try startDaemon(DaemonProcess.pipelineConfig(
            pluginDirectory: plugins.path, interface: app, mode: mode, modules: """
                [[pipeline.modules]]
                kind = "count"
                top = 20
                """, interfaceOptions: interfaceOptions + "\nprefilter_protocols = [\"udp\"]"))
        try daemon.showingLogOnFailure { try daemon.waitForPipeline() }
        // virtio_net adds queue pairs for XDP_TX when combined + CPUs fit in
        // its maximum, and the host then delivers to their rx queues too:
        // the pipeline must read those as well.
        if readsEveryQueue {
            let queues = try pipeline()?["statistics"]?["sockets"]?.arrayValue?.compactMap { $0["queue"]?.integer(as: Int.self) }
            XCTAssertEqual(queues, Array(0..<(try realRxQueues())), "rx queues the pipeline does not read")
        }
    }

    /// The guest's CPUs as virtio_net counts them for XDP_TX (nr_cpu_ids).
    private func possibleCPUs() throws -> Int {
        let text = try String(contentsOfFile: "/sys/devices/system/cpu/possible", encoding: .utf8)
        return text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",").reduce(0) { total, range in
            let bounds = range.split(separator: "-").compactMap { Int($0) }
            return total + (bounds.count == 2 ? bounds[1] - bounds[0] + 1 : 1)
        }
    }

    /// One combined channel, so that virtio_net's XDP_TX queue pairs fit
    /// (1 + CPUs ≤ the tap's queue pairs); returns the rx queue count XDP brings.
    private func channelsThatGrowAtAttach() throws -> Int {
        try setCombined(1)
        let grown = 1 + (try possibleCPUs())
        guard grown <= (try channels().maximum["combined"] ?? 0) else {
            XCTFail("1 channel + \(try possibleCPUs()) CPUs do not fit in \(try channels().maximum) (tools/vmlab)")
            throw XCTSkip("failed")
        }
        XCTAssertEqual(try realRxQueues(), 1)
        return grown
    }

    private func pipeline() throws -> JSONValue? {
        try daemon.call("pipeline.status")["result"]?["pipelines"]?.arrayValue?.first
    }

    private func countModule() throws -> JSONValue? {
        try pipeline()?["modules"]?.arrayValue?.first { $0["kind"] == "count" }
    }

    /// Sends `perWorker` frames per trafgen worker of each flow from the peer and
    /// waits until the pipeline has accounted for all of them (or a deadline).
    /// Returns how many were sent.
    private func sendAndAccount(_ flows: UDPFlows, perWorker: Int) throws -> Int {
        try flows.send(perWorker: perWorker)
        let sent = 2 * perWorker * flows.ports.count
        do {
            try waitUntil("\(sent) packets accounted for", timeout: .seconds(60), every: .milliseconds(200)) {
                let totals = try self.pipeline()?["totals"]
                let accounted = ["rx_packets", "kernel_dropped", "ring_full", "handoff_drops"]
                    .reduce(0) { $0 + (totals?[$1]?.integer(as: Int.self) ?? 0) }
                return accounted >= sent
            }
        } catch {
            let driver = try runCommand(["ethtool", "-S", app]).stdout
            XCTFail("\(error)\npipeline: \(try pipeline()?.serialized() ?? "none")\nethtool -S \(app):\n\(driver)\n\(daemon.log())")
            throw error
        }
        return sent
    }

    /// Exactly `sent` packets in the pipeline's totals and the count module,
    /// `sent / flows` per flow.
    private func assertCountedExactly(_ sent: Int, _ flows: UDPFlows, file: StaticString = #filePath, line: UInt = #line) throws {
        let status = try XCTUnwrap(pipeline(), file: file, line: line)
        XCTAssertEqual(status["totals"]?["rx_packets"], JSONValue(sent), "no drops expected: \(status.serialized())",
                       file: file, line: line)
        let count = try XCTUnwrap(countModule(), file: file, line: line)
        XCTAssertEqual(count["counters"]?["packets"], JSONValue(sent), file: file, line: line)
        XCTAssertEqual(count["counters"]?["flows"], JSONValue(flows.ports.count), file: file, line: line)
        let rows = count["rows"]?.arrayValue ?? []
        for port in flows.ports {
            let row = rows.first { $0["dport"] == .string(String(port)) }
            XCTAssertEqual(row?["packets"], .string(String(sent / flows.ports.count)), "flow \(port): \(rows)",
                           file: file, line: line)
        }
    }

    // MARK: NIC control and the journal

    /// channels.set through each backend (the daemon's [nic] backend), read
    /// back by `ethtool -l` and by the kernel's real queues in sysfs; a clean
    /// stop puts back the count it found.
    func testCombinedChannelsThroughNetlinkAndIoctlAreRestoredByACleanStop() throws {
        let found = try channels()
        XCTAssertEqual(found.maximum["combined"], 3, "the tap's queue pairs (tools/vmlab)")
        XCTAssertEqual(found.maximum["rx"], 0, "virtio_net has combined channels only")
        let original = try XCTUnwrap(found.current["combined"])
        for (backend, target) in [("netlink", original == 3 ? 2 : 3), ("ioctl", 1)] {
            try startDaemon("[plugins]\ndir = \"\(plugins.path)\"\n\n[nic]\nbackend = \"\(backend)\"\n")
            let set = ok(try daemon.call("channels.set", ["iface": .string(app), "combined": JSONValue(target)]))
            XCTAssertEqual(set["backend"], .string(backend), set.serialized())
            XCTAssertEqual(set["value"]?["combined"], JSONValue(target), set.serialized())
            XCTAssertEqual(try channels().current["combined"], target, "ethtool -l after a \(backend) set")
            XCTAssertEqual(try realRxQueues(), target)
            let read = ok(try daemon.call("channels.get", ["iface": .string(app)]))
            XCTAssertEqual(read["value"]?["combined"], JSONValue(target), read.serialized())
            XCTAssertEqual(read["backend"], .string(backend))

            daemon.signal(SIGTERM)
            XCTAssertEqual(try daemon.waitForExit(), 0, daemon.log())
            XCTAssertEqual(try channels().current["combined"], original, "a clean stop restores (\(backend))")
        }
    }

    /// A killed daemon leaves its change; the next start restores it from the journal.
    func testTheJournalRestoresAKilledDaemonsChannelChange() throws {
        let original = try XCTUnwrap(channels().current["combined"])
        let changed = original == 3 ? 1 : 3
        try daemon.start()
        _ = ok(try daemon.call("channels.set", ["iface": .string(app), "combined": JSONValue(changed)]))
        XCTAssertEqual(try channels().current["combined"], changed)

        daemon.signal(SIGKILL)
        try daemon.waitForExit()
        XCTAssertEqual(try channels().current["combined"], changed, "nothing restores a killed daemon's changes but the next start")

        try daemon.start()
        XCTAssertEqual(try channels().current["combined"], original)
        XCTAssertTrue(daemon.log().contains("restored NIC changes left by a previous run"), daemon.log())
        daemon.signal(SIGTERM)
        XCTAssertEqual(try daemon.waitForExit(), 0)
        XCTAssertEqual(try channels().current["combined"], original, "nothing restored twice")
    }

    // MARK: The data path

    /// Two combined channels, a pipelined run in copy mode: every packet of
    /// eight flows is counted once, and each socket received exactly what
    /// the driver counted on its queue (`ethtool -S`, rx_queue_N_xdp_packets).
    /// Which queue a flow takes is the host tap's hash: not asserted.
    func testAPipelineOnTwoQueuesCountsEveryPacketAsTheDriverDoes() throws {
        try setCombined(2)
        try startPipeline(mode: "pipelined", interfaceOptions: "bind_mode = \"copy\"")
        let before = try lab.appReceivedPerQueue()
        let flows = UDPFlows(lab: lab, ports: Array(5101...5108))
        let sent = try sendAndAccount(flows, perWorker: 100)
        try assertCountedExactly(sent, flows)

        let sockets = try XCTUnwrap(pipeline()?["statistics"]?["sockets"]?.arrayValue)
        XCTAssertEqual(sockets.map { $0["queue"] }, [0, 1])
        XCTAssertEqual(sockets.map { $0["zero_copy"] }, [false, false])
        let received = sockets.map { $0["rx_packets"]?.integer(as: Int.self) ?? -1 }
        XCTAssertEqual(received.reduce(0, +), sent)
        let after = try lab.appReceivedPerQueue()
        let perQueue = (0..<2).map { after[$0] - before[$0] }
        XCTAssertEqual(received, perQueue, "per socket vs ethtool -S per queue")
        XCTAssertEqual(after[2...].reduce(0, +) - before[2...].reduce(0, +), 0, "nothing on queues beyond the 2 channels")
    }

    /// virtio_net adds a queue pair per CPU for XDP_TX at attach when
    /// combined + CPUs fit in its maximum (1 + 2 ≤ 3 here), and the host
    /// delivers to the added rx queues too. A pipeline on the default
    /// channels binds them as well: every packet of sixteen flows is counted
    /// once, each socket exactly as the driver counted its queue (the added
    /// ones included), nothing rebinds, and at stop the queues go again.
    func testRxQueuesVirtioNetAddsAtXDPAttachAreReadToo() throws {
        let grown = try channelsThatGrowAtAttach()
        try startPipeline(mode: "pipelined", interfaceOptions: "bind_mode = \"copy\"")
        XCTAssertEqual(try realRxQueues(), grown, "virtio_net's XDP_TX queue pairs")
        XCTAssertEqual(try channels().current["combined"], grown, "ethtool -l counts them as combined channels while XDP is attached")
        let status = try XCTUnwrap(pipeline())
        let sockets = try XCTUnwrap(status["statistics"]?["sockets"]?.arrayValue)
        XCTAssertEqual(sockets.map { $0["queue"]?.integer(as: Int.self) }, Array(0..<grown), status.serialized())
        XCTAssertEqual(sockets.map { $0["xskmap_key"]?.integer(as: Int.self) }, Array(0..<grown))
        XCTAssertEqual(status["mappings"]?.arrayValue?.count, grown, "the lease holds the added channels")
        XCTAssertNil(status["unread_added_queues"], status.serialized())
        XCTAssertTrue(daemon.log().contains("rx queues added at XDP attach are bound too"), daemon.log())

        let before = try lab.appReceivedPerQueue()
        let flows = UDPFlows(lab: lab, ports: Array(5301...5316))
        let sent = try sendAndAccount(flows, perWorker: 50)
        try assertCountedExactly(sent, flows)
        let received = try XCTUnwrap(pipeline()?["statistics"]?["sockets"]?.arrayValue)
            .map { $0["rx_packets"]?.integer(as: Int.self) ?? -1 }
        let after = try lab.appReceivedPerQueue()
        XCTAssertEqual(received, (0..<grown).map { after[$0] - before[$0] }, "per socket vs ethtool -S per queue")
        XCTAssertGreaterThan(received.dropFirst().reduce(0, +), 0, "the host delivered to the added queues (\(received))")
        XCTAssertFalse(daemon.log().contains("pipeline bound again"), "the attach's queues are no channel change: \(daemon.log())")

        _ = ok(try daemon.call("pipeline.stop", ["iface": .string(app)]))
        XCTAssertEqual(try realRxQueues(), 1, "virtio_net removes its XDP_TX queue pairs at detach")
        XCTAssertEqual(try channels().current["combined"], 1)
    }

    /// With `channels` configured the added queues stay unread, and the
    /// daemon says so: the log, `pipeline status` and `doctor` name the
    /// interface, the driver, the queues and why.
    func testRxQueuesAddedAtAttachOutsideTheConfiguredChannelsAreReported() throws {
        let grown = try channelsThatGrowAtAttach()
        try startPipeline(mode: "inline", interfaceOptions: "bind_mode = \"copy\"\nchannels = [0]", readsEveryQueue: false)
        let added = Array(1..<grown).map(String.init).joined(separator: ", ")
        let status = try XCTUnwrap(pipeline())
        let warning = try XCTUnwrap(status["unread_added_queues"]?.stringValue, status.serialized())
        for part in ["virtio_net", app, "queues [\(added)]", "channels [0] only"] {
            XCTAssertTrue(warning.contains(part), "\(part) in \(warning)")
        }
        XCTAssertTrue(daemon.log().contains("rx queues that no socket reads"), daemon.log())
        let text = try runCommand([DaemonProcess.sluicectlPath, "pipeline", "status", "--socket", daemon.socketPath],
                                  check: true).stdout
        XCTAssertTrue(text.contains("warning: \(warning)"), text)
        let doctor = ok(try daemon.call("doctor", ["iface": .string(app), "sample_ms": 0]))
        XCTAssertTrue(doctor.serialized().contains("rx queues added at XDP attach on \(app) are read by no socket"),
                      doctor.serialized())
    }

    /// `bind_mode = "auto"`: virtio_net refuses zero-copy (EOPNOTSUPP), so
    /// the sockets fall back to copy mode on the generic plugin's queues
    /// (identity), `pipeline status` says why, and the traffic is counted
    /// exactly (inline mode).
    func testAutoBindFallsBackToCopyModeOnTheChannelsOwnQueues() throws {
        try setCombined(2)
        try startPipeline(mode: "inline", interfaceOptions: "bind_mode = \"auto\"")
        let status = try XCTUnwrap(pipeline())
        XCTAssertEqual(status["plugin"], "generic")
        let sockets = try XCTUnwrap(status["statistics"]?["sockets"]?.arrayValue)
        XCTAssertEqual(sockets.map { $0["queue"] }, [0, 1], status.serialized())
        XCTAssertEqual(sockets.map { $0["xskmap_key"] }, [0, 1])
        XCTAssertEqual(sockets.map { $0["zero_copy"] }, [false, false])
        for (queue, socket) in sockets.enumerated() {
            let reason = socket["fallback_reason"]?.stringValue ?? ""
            XCTAssertTrue(reason.hasPrefix("virtio_net cannot do AF_XDP zero-copy on \(app) queue \(queue) ("), reason)
            XCTAssertTrue(reason.contains("EOPNOTSUPP") && reason.hasSuffix("); bound in copy mode"), reason)
        }
        let text = try runCommand([DaemonProcess.sluicectlPath, "pipeline", "status", "--socket", daemon.socketPath],
                                  check: true).stdout
        for queue in 0..<2 {
            XCTAssertTrue(text.contains("ch \(queue) → q \(queue) copy"), text)
            XCTAssertTrue(text.contains("ch \(queue) → q \(queue) copy: virtio_net cannot do AF_XDP zero-copy"), text)
        }

        let flows = UDPFlows(lab: lab, ports: [5201, 5202, 5203, 5204])
        try assertCountedExactly(try sendAndAccount(flows, perWorker: 100), flows)
    }
}
