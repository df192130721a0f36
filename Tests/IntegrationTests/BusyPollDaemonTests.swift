import Foundation
import SluiceControl
import SluiceDataPath
import SluiceTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// `busy_poll = true` on the real daemon and a lab veth: every packet
/// counted, the status fields, and the device's NAPI settings set while the
/// pipeline runs and restored at stop, at daemon stop and after a SIGKILL.
/// (Whether busy polling wakes less or costs less is for tools/bench.)
final class BusyPollDaemonTests: XCTestCase {
    private var lab: Lab?
    private var daemon: DaemonProcess?
    private var plugins: PluginDirectory?

    override func setUpWithError() throws {
        try Privilege.require()
        let feature = KernelFeatures.detected(.busyPoll)
        if feature.state != .found { throw XCTSkip("this kernel has no \(feature.title): \(feature.detail)") }
        plugins = try PluginDirectory.withShippedPlugins()
    }

    override func tearDown() {
        daemon?.stop()
        try? lab?.down()
        plugins?.remove()
    }

    private func config(_ lab: Lab) -> String {
        DaemonProcess.pipelineConfig(
            pluginDirectory: plugins!.path, interface: lab.appInterface, mode: "inline", modules: """
                autostart = true

                [[pipeline.modules]]
                kind = "count"
                """, interfaceOptions: """
                prefilter_protocols = ["udp"]
                busy_poll = true
                busy_poll_usecs = 30
                busy_poll_budget = 32
                napi_defer_hard_irqs = 3
                gro_flush_timeout = 150000
                """)
    }

    /// napi_defer_hard_irqs and gro_flush_timeout, read back from sysfs.
    private func napiSettings(_ lab: Lab) throws -> [UInt64] {
        try ["napi_defer_hard_irqs", "gro_flush_timeout"].map { file in
            let text = try String(contentsOfFile: "/sys/class/net/\(lab.appInterface)/\(file)", encoding: .utf8)
            return try XCTUnwrap(UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)), text)
        }
    }

    private func pipeline(_ daemon: DaemonProcess) throws -> JSONValue? {
        try daemon.call("stats.get")["result"]?["pipelines"]?.arrayValue?.first
    }

    /// Without busy_poll: the fields say so, no kick is made, the RX
    /// threads sleep in poll(), and nothing in sysfs is touched or journaled.
    func testWithoutBusyPollTheFieldsSaySoAndSysfsIsUntouched() throws {
        let lab = try Lab.up(queues: 2, prefix: "sbq")
        self.lab = lab
        let original = try napiSettings(lab)
        let daemon = try DaemonProcess(extraConfig: DaemonProcess.pipelineConfig(
            pluginDirectory: plugins!.path, interface: lab.appInterface, mode: "pipelined"))
        self.daemon = daemon
        try daemon.start()
        try daemon.waitForPipeline()
        // The RX loop starts on an empty ring: it sleeps in poll() at once.
        try waitUntil("every RX thread to have slept in poll()") {
            let sockets = try self.pipeline(daemon)?["statistics"]?["sockets"]?.arrayValue ?? []
            return sockets.count == 2 && sockets.allSatisfy { ($0["poll_sleeps"]?.integer(as: Int.self) ?? 0) > 0 }
        }
        for socket in try XCTUnwrap(pipeline(daemon)?["statistics"]?["sockets"]?.arrayValue) {
            XCTAssertEqual(socket["busy_poll"], false, socket.serialized())
            XCTAssertEqual(socket["busy_poll_kicks"], 0, socket.serialized())
        }
        XCTAssertEqual(try napiSettings(lab), original)
        XCTAssertEqual(try daemon.call("nic.show", ["iface": .string(lab.appInterface)])["result"]?["changes"], [])
    }

    func testEveryPacketIsCountedAndTheNAPISettingsAreRestored() throws {
        let lab = try Lab.up(queues: 2, prefix: "sbp")
        self.lab = lab
        let original = try napiSettings(lab)
        XCTAssertNotEqual(original, [3, 150_000], "the lab starts from other values")
        let daemon = try DaemonProcess(extraConfig: config(lab))
        self.daemon = daemon
        try daemon.start()
        try daemon.waitForPipeline()
        XCTAssertEqual(try napiSettings(lab), [3, 150_000], "set while the pipeline runs")

        let flows = UDPFlows(lab: lab, ports: [5001, 5002])
        let perWorker = 1000
        try flows.send(perWorker: perWorker)
        let sent = 2 * perWorker * flows.ports.count
        try waitUntil("\(sent) packets accounted for", timeout: .seconds(20)) {
            let totals = try self.pipeline(daemon)?["totals"]
            let received = totals?["rx_packets"]?.integer(as: Int.self) ?? 0
            let dropped = (totals?["kernel_dropped"]?.integer(as: Int.self) ?? 0) + (totals?["ring_full"]?.integer(as: Int.self) ?? 0)
            return received + dropped >= sent
        }
        let report = try XCTUnwrap(pipeline(daemon))
        XCTAssertEqual(report["totals"]?["rx_packets"], JSONValue(sent), report.serialized())
        let count = report["modules"]?.arrayValue?.first { $0["kind"] == "count" }
        XCTAssertEqual(count?["counters"]?["packets"]?.integer(as: Int.self), sent)
        let sockets = try XCTUnwrap(report["statistics"]?["sockets"]?.arrayValue)
        XCTAssertEqual(sockets.count, 2)
        for socket in sockets {
            XCTAssertEqual(socket["busy_poll"], true, socket.serialized())
            // The RX loop starts on an empty ring: it kicks before it ever sleeps.
            XCTAssertGreaterThan(socket["busy_poll_kicks"]?.integer(as: Int.self) ?? 0, 0, socket.serialized())
            XCTAssertNotNil(socket["poll_sleeps"]?.integer(as: Int.self), socket.serialized())
        }

        let status = try runCommand([DaemonProcess.sluicectlPath, "pipeline", "status", "--socket", daemon.socketPath],
                                  check: true).stdout
        for queue in 0..<2 {
            XCTAssertTrue(status.contains("ch \(queue) → q \(queue) busy poll: "), status)
        }

        // pipeline.stop restores them; pipeline.start sets them again.
        XCTAssertEqual(try daemon.call("pipeline.stop")["ok"], true)
        XCTAssertEqual(try napiSettings(lab), original, "restored at pipeline stop")
        XCTAssertEqual(try daemon.call("pipeline.start")["ok"], true)
        XCTAssertEqual(try napiSettings(lab), [3, 150_000])

        // A SIGKILL leaves them set; the next start restores them from the journal.
        daemon.signal(SIGKILL)
        try daemon.waitForExit()
        XCTAssertEqual(try napiSettings(lab), [3, 150_000])
        let text = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        try daemon.writeConfig(text.replacingOccurrences(of: "autostart = true", with: "autostart = false"))
        try daemon.start()
        try waitUntil("the settings restored at the start after the crash") { try self.napiSettings(lab) == original }
        XCTAssertNotEqual(try pipeline(daemon)?["running"], true, "autostart is off now")
        XCTAssertTrue(daemon.log().contains("napi_defer_hard_irqs restored to \(original[0])"), daemon.log())

        // And at daemon stop.
        XCTAssertEqual(try daemon.call("pipeline.start")["ok"], true)
        XCTAssertEqual(try napiSettings(lab), [3, 150_000])
        daemon.signal(SIGTERM)
        XCTAssertEqual(try daemon.waitForExit(), 0)
        XCTAssertEqual(try napiSettings(lab), original, "restored at daemon stop")
    }
}
