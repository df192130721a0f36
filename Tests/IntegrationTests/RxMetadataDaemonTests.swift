import Foundation
import SluiceControl
import SluiceDataPath
import SluiceTestSupport
import XCTest

/// `rx_metadata` on the real daemon and a lab veth: pipeline.status says
/// whether the driver's RX metadata is in use and why (not), count reports
/// its driver-hash use, doctor reports the probe and the finding.
final class RxMetadataDaemonTests: XCTestCase {
    private var lab: Lab?
    private var daemon: DaemonProcess?
    private var plugins: PluginDirectory?

    override func setUpWithError() throws {
        try Privilege.require()
        plugins = try PluginDirectory.withShippedPlugins()
    }

    override func tearDown() {
        daemon?.stop()
        try? lab?.down()
        plugins?.remove()
    }

    private func start(
        prefix: String, interfaceOptions: String, moreModules: String = "", environment: [String: String] = [:]
    ) throws -> (Lab, DaemonProcess) {
        let lab = try Lab.up(queues: 1, prefix: prefix)
        self.lab = lab
        let daemon = try DaemonProcess(extraConfig: DaemonProcess.pipelineConfig(
            pluginDirectory: plugins!.path, interface: lab.appInterface, mode: "inline", modules: """
                autostart = true

                [[pipeline.modules]]
                kind = "count"
                \(moreModules)
                """, interfaceOptions: interfaceOptions))
        self.daemon = daemon
        try daemon.start(environment: environment)
        try daemon.waitForPipeline()
        return (lab, daemon)
    }

    private func pipeline(_ daemon: DaemonProcess) throws -> JSONValue? {
        try daemon.call("pipeline.status")["result"]?["pipelines"]?.arrayValue?.first
    }

    private func doctorReply(_ daemon: DaemonProcess, _ iface: String) throws -> JSONValue {
        let reply = try daemon.call("doctor", ["iface": .string(iface), "sample_ms": 0])
        XCTAssertEqual(reply["ok"], true, reply.serialized())
        return try XCTUnwrap(reply["result"])
    }

    /// `rx_metadata = "auto"` with count. On a kernel with the kfuncs (the
    /// probe decides): in use, veth's hash provided and its timestamp
    /// absent, count took the driver's hash for every packet, and doctor
    /// shows the probe found and the metadata in use. Without them (Debian
    /// 12's 6.1): not in use, the reason names the missing kfuncs, count
    /// hashes the headers of every packet, and doctor's finding says which
    /// kernel would have them.
    func testInUseOnVethWithTheHashCountedAndReported() throws {
        let feature = KernelFeatures.detected(.xdpRxMetadata)
        let found = feature.state == .found
        let (lab, daemon) = try start(prefix: "srd", interfaceOptions: "rx_metadata = \"auto\"")
        let flows = UDPFlows(lab: lab, ports: [9000, 9001])
        try flows.send(perWorker: 100)
        let sent = 2 * 100 * flows.ports.count
        func count() throws -> JSONValue? {
            try pipeline(daemon)?["modules"]?.arrayValue?.first { $0["kind"] == "count" }
        }
        try waitUntil("\(sent) packets counted") { try count()?["counters"]?["packets"]?.integer(as: Int.self) == sent }
        XCTAssertEqual(try count()?["counters"]?["driver_hash_packets"]?.integer(as: Int.self), found ? sent : 0)
        let metadata = try XCTUnwrap(pipeline(daemon)?["statistics"]?["rx_metadata"])
        XCTAssertEqual(metadata["in_use"], .bool(found), metadata.serialized())
        XCTAssertEqual(metadata["hash"], found ? "provided" : "off", metadata.serialized())
        XCTAssertEqual(metadata["timestamp"], found ? "absent" : "off", metadata.serialized())
        if !found {
            XCTAssertTrue(
                metadata["reason"]?.stringValue?.hasPrefix("this kernel has no \(feature.title)") == true, metadata.serialized())
        }
        let xdp = try XCTUnwrap(pipeline(daemon)?["statistics"]?["xdp"]?.arrayValue)
        XCTAssertEqual(xdp.reduce(0) { $0 + ($1["metadata_written"]?.integer(as: Int.self) ?? 0) }, found ? sent : 0)

        let doctor = try doctorReply(daemon, lab.appInterface)
        let probe = doctor["kernel_features"]?.arrayValue?.first { $0["name"] == "xdp_rx_metadata" }
        XCTAssertEqual(probe?["state"], .string(feature.state.rawValue), doctor.serialized())
        let title = found ? "RX metadata is in use" : "RX metadata is not in use"
        let finding = doctor["findings"]?.arrayValue?.first { $0["title"]?.stringValue?.contains(title) == true }
        XCTAssertEqual(finding?["severity"], "info", doctor.serialized())
        if !found {
            XCTAssertTrue(
                finding?["fix"]?.stringValue?.contains("run a kernel with the XDP metadata kfuncs") == true, doctor.serialized())
        }
    }

    /// The kernel refuses the device-bound load (the test switch binds the
    /// metadata program to lo, which has no native XDP, so the refusal is the
    /// kernel's own: EOPNOTSUPP on 6.18): the pipeline still starts, with the
    /// plain program attached natively, status and doctor say why, count and pcap see every
    /// packet, and the pcapng file carries the receive time.
    func testRefusedDeviceBoundLoadRunsThePlainProgram() throws {
        let feature = KernelFeatures.detected(.xdpRxMetadata)
        if feature.state != .found {
            throw XCTSkip("this kernel has no \(feature.title), so the device-bound program is never tried: \(feature.detail)")
        }
        let capture = plugins!.path + "-refused/capture.pcapng"
        defer { try? FileManager.default.removeItem(atPath: plugins!.path + "-refused") }
        let started = Date().timeIntervalSince1970
        let (lab, daemon) = try start(
            prefix: "srf", interfaceOptions: "rx_metadata = \"auto\"", moreModules: """

                [[pipeline.modules]]
                kind = "pcap"
                path = "\(capture)"
                """, environment: [XDPProgram.refuseDeviceBoundSwitch: "1"])
        let statistics = try XCTUnwrap(pipeline(daemon)?["statistics"])
        let metadata = try XCTUnwrap(statistics["rx_metadata"])
        XCTAssertEqual(metadata["in_use"], false, metadata.serialized())
        XCTAssertEqual(metadata["hash"], "off", metadata.serialized())
        let reason = metadata["reason"]?.stringValue ?? ""
        XCTAssertTrue(reason.contains("the device-bound metadata program did not load on \(lab.appInterface)"), reason)
        XCTAssertTrue(reason.contains("running the plain program"), reason)
        XCTAssertTrue(reason.contains("loading Sluice's XDP program for \(lab.appInterface)"), "the kernel's refusal: \(reason)")

        // The program the pipeline reports is the one on the interface, attached natively.
        let programID = try XCTUnwrap(statistics["program_id"]?.integer(as: Int.self), statistics.serialized())
        XCTAssertEqual(statistics["attach_mode"], "native", statistics.serialized())
        let link = try runCommand(["ip", "-d", "link", "show", "dev", lab.appInterface], check: true).stdout
        XCTAssertTrue(link.contains("prog/xdp id \(programID) "), link)
        XCTAssertFalse(link.contains("xdpgeneric"), link)

        let flows = UDPFlows(lab: lab, ports: [9000, 9001])
        try flows.send(perWorker: 100)
        let sent = 2 * 100 * flows.ports.count
        func module(_ kind: String) throws -> JSONValue? {
            try pipeline(daemon)?["modules"]?.arrayValue?.first { $0["kind"] == .string(kind) }
        }
        try waitUntil("\(sent) packets counted") { try module("count")?["counters"]?["packets"]?.integer(as: Int.self) == sent }
        try waitUntil("\(sent) packets captured") { try module("pcap")?["counters"]?["packets"]?.integer(as: Int.self) == sent }
        XCTAssertEqual(try module("count")?["counters"]?["driver_hash_packets"]?.integer(as: Int.self), 0)
        XCTAssertEqual(try module("pcap")?["counters"]?["driver_timestamps"]?.integer(as: Int.self), 0)
        let xdp = try XCTUnwrap(pipeline(daemon)?["statistics"]?["xdp"]?.arrayValue)
        func total(_ name: String) -> Int { xdp.reduce(0) { $0 + ($1[name]?.integer(as: Int.self) ?? 0) } }
        XCTAssertEqual(total("redirected"), sent, "the plain program redirected every packet")
        XCTAssertEqual(total("metadata_written"), 0, "and, being the plain one, stored no metadata")

        let doctor = try doctorReply(daemon, lab.appInterface)
        let finding = doctor["findings"]?.arrayValue?.first { $0["title"]?.stringValue?.contains("RX metadata is not in use") == true }
        XCTAssertEqual(finding?["severity"], "info", doctor.serialized())
        XCTAssertTrue(
            finding?["evidence"]?.arrayValue?.contains { $0.stringValue?.contains("did not load") == true } == true,
            doctor.serialized())

        XCTAssertEqual(try daemon.call("pipeline.stop")["ok"], true, "stopping flushes pcap's buffer to the file")
        let ended = Date().timeIntervalSince1970
        try assertReceiveTimeStamps(capture, packets: sent, started: started, ended: ended)
    }

    /// `rx_metadata = "off"` on any kernel: not in use, the reason names the
    /// key, count hashes the headers, and doctor's finding has the fix.
    func testOffIsReportedWithTheReasonAndTheFix() throws {
        let (lab, daemon) = try start(prefix: "sro", interfaceOptions: "rx_metadata = \"off\"")
        let metadata = try XCTUnwrap(pipeline(daemon)?["statistics"]?["rx_metadata"])
        XCTAssertEqual(metadata["in_use"], false, metadata.serialized())
        XCTAssertEqual(metadata["hash"], "off", metadata.serialized())
        XCTAssertTrue(metadata["reason"]?.stringValue?.contains("rx_metadata = \"off\"") == true, metadata.serialized())
        let doctor = try doctorReply(daemon, lab.appInterface)
        let finding = doctor["findings"]?.arrayValue?.first { $0["title"]?.stringValue?.contains("RX metadata is not in use") == true }
        XCTAssertEqual(finding?["severity"], "info", doctor.serialized())
        XCTAssertTrue(finding?["fix"]?.stringValue?.contains("rx_metadata = \"auto\"") == true, doctor.serialized())
    }
}
