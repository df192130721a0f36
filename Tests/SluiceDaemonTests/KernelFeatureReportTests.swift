import Logging
import SluiceControl
import SluiceDataPath
import XCTest

@testable import SluiceDaemon

/// The kernel-feature section of `doctor` and the start log lines, on
/// made-up probe results (the probes themselves: KernelFeaturesTests).
final class KernelFeatureReportTests: XCTestCase {
    private let features = [
        KernelFeature(.xdpLiveFrames, .missing, "BPF_PROG_RUN with live frames refused: Operation not permitted (EPERM)"),
        KernelFeature(.xdpRxMetadata, .unknown, "cannot read the kernel's BTF"),
        KernelFeature(.xdpLink, .found, "vmlinux BTF: enum bpf_link_type has BPF_LINK_TYPE_XDP"),
    ]

    func testDoctorReplyCarriesEveryFeatureWithStateDetailAndConsequence() throws {
        let reply = try JSONValue(encoding: DoctorReport(findings: [], kernelFeatures: features))
        let encoded = try XCTUnwrap(reply["kernel_features"]?.arrayValue)
        XCTAssertEqual(encoded.count, 3)
        XCTAssertEqual(encoded.compactMap { $0["name"]?.stringValue }, ["xdp_live_frames", "xdp_rx_metadata", "bpf_link_xdp"])
        XCTAssertEqual(encoded.compactMap { $0["state"]?.stringValue }, ["missing", "unknown", "found"])
        XCTAssertEqual(encoded[0]["since"], "5.18")
        XCTAssertEqual(encoded[0]["detail"]?.stringValue, features[0].detail)
        XCTAssertTrue(encoded[0]["without"]?.stringValue?.contains("AF_XDP TX") ?? false, encoded[0].serialized())
        XCTAssertEqual(Set(encoded[2].objectValue?.keys.map { $0 } ?? []), ["name", "title", "since", "state", "detail", "without"])
    }

    func testStartLogLinesSayWhatSluiceDoesWithoutAFeature() {
        let missing = Daemon.logMessage(features[0])
        XCTAssertTrue(missing.hasPrefix("kernel feature xdp_live_frames: missing ("), missing)
        XCTAssertTrue(missing.contains("EPERM"), missing)
        XCTAssertTrue(missing.hasSuffix("; without it: " + features[0].without), missing)
        XCTAssertTrue(Daemon.logMessage(features[1]).contains("; if missing: no hardware receive timestamp"))
        XCTAssertFalse(Daemon.logMessage(features[2]).contains("without it"))

        XCTAssertEqual(Daemon.logLevel(features[0]), .notice)
        XCTAssertEqual(Daemon.logLevel(features[1]), .notice)
        XCTAssertEqual(Daemon.logLevel(features[2]), .info)
        XCTAssertEqual(Daemon.logLevel(KernelFeature(.xdpLink, .missing, "")), .warning, "no pipeline can start")
    }
}
