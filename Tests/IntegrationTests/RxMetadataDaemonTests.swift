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

    private func start(prefix: String, interfaceOptions: String) throws -> (Lab, DaemonProcess) {
        let lab = try Lab.up(queues: 1, prefix: prefix)
        self.lab = lab
        let daemon = try DaemonProcess(extraConfig: DaemonProcess.pipelineConfig(
            pluginDirectory: plugins!.path, interface: lab.appInterface, mode: "inline", modules: """
                autostart = true

                [[pipeline.modules]]
                kind = "count"
                """, interfaceOptions: interfaceOptions))
        self.daemon = daemon
        try daemon.start()
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

    /// On a kernel with the kfuncs: in use, veth's hash provided and its
    /// timestamp absent, count took the driver's hash for every packet, and
    /// doctor shows the probe found and the metadata in use.
    func testInUseOnVethWithTheHashCountedAndReported() throws {
        let feature = KernelFeatures.detected(.xdpRxMetadata)
        if feature.state != .found { throw XCTSkip("this kernel has no \(feature.title): \(feature.detail)") }
        let (lab, daemon) = try start(prefix: "srd", interfaceOptions: "rx_metadata = \"auto\"")
        let flows = UDPFlows(lab: lab, ports: [9000, 9001])
        try flows.send(perWorker: 100)
        let sent = 2 * 100 * flows.ports.count
        func count() throws -> JSONValue? {
            try pipeline(daemon)?["modules"]?.arrayValue?.first { $0["kind"] == "count" }
        }
        try waitUntil("\(sent) packets counted") { try count()?["counters"]?["packets"]?.integer(as: Int.self) == sent }
        XCTAssertEqual(try count()?["counters"]?["driver_hash_packets"]?.integer(as: Int.self), sent)
        let metadata = try XCTUnwrap(pipeline(daemon)?["statistics"]?["rx_metadata"])
        XCTAssertEqual(metadata["in_use"], true, metadata.serialized())
        XCTAssertEqual(metadata["hash"], "provided", metadata.serialized())
        XCTAssertEqual(metadata["timestamp"], "absent", metadata.serialized())
        let xdp = try XCTUnwrap(pipeline(daemon)?["statistics"]?["xdp"]?.arrayValue)
        XCTAssertEqual(xdp.reduce(0) { $0 + ($1["metadata_written"]?.integer(as: Int.self) ?? 0) }, sent)

        let doctor = try doctorReply(daemon, lab.appInterface)
        let probe = doctor["kernel_features"]?.arrayValue?.first { $0["name"] == "xdp_rx_metadata" }
        XCTAssertEqual(probe?["state"], "found", doctor.serialized())
        let finding = doctor["findings"]?.arrayValue?.first { $0["title"]?.stringValue?.contains("RX metadata is in use") == true }
        XCTAssertEqual(finding?["severity"], "info", doctor.serialized())
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
