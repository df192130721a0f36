import Foundation
import SluiceDataPath
import SluiceTestSupport
import XCTest

/// tools/gen's sluice-gen, which the benchmark sends with. Some kernels refuse
/// BPF_PROG_RUN with XDP live frames (EPERM even to root), so the generator
/// falls back to AF_XDP TX; nothing may depend on live frames being allowed.
/// The fallback is forced here with SLUICE_GEN_MODE, and `auto` is run as the
/// machine allows: each must say which method sent and deliver every frame.
final class GeneratorTests: XCTestCase {
    private var lab: Lab?
    private var buildDirectory: URL?

    override func setUpWithError() throws {
        try Privilege.require()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("sluice-gen"))
        buildDirectory = directory
        try SluiceTestSupport.run(
            [repositoryRoot.appendingPathComponent("tools/gen/build").path, directory.path], check: true)
        let lab = try Lab.up(queues: 2, prefix: "sgen")
        self.lab = lab
        // An XDP program on the receiver: veth delivers live frames only then,
        // and counts every frame per rx queue (ethtool -S) on that path.
        try lab.inApp(["ip", "link", "set", "dev", lab.appInterface, "xdp", "obj",
                       directory.appendingPathComponent("xdp_drop.bpf.o").path, "sec", "xdp"], check: true)
    }

    override func tearDown() {
        try? lab?.down()
        if let buildDirectory { try? FileManager.default.removeItem(at: buildDirectory) }
    }

    /// Runs sluice-gen in the generator namespace: `count` frames in 8 flows
    /// from CPU 0 (so on queue 0 either way), at a rate the slower method reaches.
    private func send(count: Int, mode: String?) throws -> (output: String, received: [Int]) {
        let lab = try XCTUnwrap(lab)
        let before = try lab.appReceivedPerQueue()
        let mac = try String(contentsOfFile: "/sys/class/net/\(lab.appInterface)/address", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let generator = try XCTUnwrap(buildDirectory).appendingPathComponent("sluice-gen").path
        var environment: [String: String] = [:]
        if let mode { environment["SLUICE_GEN_MODE"] = mode }
        let result = try SluiceTestSupport.run(
            ["ip", "netns", "exec", lab.generatorNamespace, generator, "--interface", lab.generatorInterface,
             "--dst-mac", mac, "--count", "\(count)", "--rate", "200000", "--duration", "20", "--flows", "8",
             "--cpu", "0"],
            environment: environment)
        XCTAssertEqual(result.status, 0, "\(result)")
        var received = try lab.appReceivedPerQueue()
        try waitUntil("\(count) frames counted by the receiver", timeout: .seconds(10)) {
            received = try lab.appReceivedPerQueue()
            return zip(received, before).map { $0 - $1 }.reduce(0, +) >= count
        }
        return (result.stdout, zip(received, before).map { $0 - $1 })
    }

    func testForcedFallbackSaysSoAndEveryFrameArrives() throws {
        let (output, received) = try send(count: 20_000, mode: "afxdp")
        let method = output.split(separator: "\n").filter { $0.hasPrefix("generator: ") }
        XCTAssertEqual(method, ["generator: af_xdp-tx (copy mode, queue 0; forced by SLUICE_GEN_MODE=afxdp)"], output)
        XCTAssertTrue(output.contains("sent 20000 frames in "), output)
        XCTAssertEqual(received, [20_000, 0], "frames per rx queue of the receiver")
    }

    func testAutoNamesTheMethodItUsedAndEveryFrameArrives() throws {
        let (output, received) = try send(count: 20_000, mode: nil)
        let method = output.split(separator: "\n").filter { $0.hasPrefix("generator: ") }
        XCTAssertEqual(method.count, 1, output)
        // Either live frames work here, or the fallback says why it was taken.
        let line = String(method.first ?? "")
        XCTAssertTrue(
            line.hasPrefix("generator: live-frames")
                || (line.hasPrefix("generator: af_xdp-tx (copy mode, queue 0; live frames refused: ")),
            line)
        XCTAssertTrue(output.contains("sent 20000 frames in "), output)
        XCTAssertEqual(received, [20_000, 0], "frames per rx queue of the receiver")
    }

    /// The daemon's live-frames probe (an XDP_DROP program, one frame) and
    /// the generator (its XDP_TX program on the lab veth) must agree: the
    /// daemon tells operators what the generator will do.
    func testLiveModeWorksExactlyWhereTheKernelFeatureProbeFindsLiveFrames() throws {
        let lab = try XCTUnwrap(lab)
        let probe = try XCTUnwrap(KernelFeatures.probe().first { $0.name == .xdpLiveFrames })
        let mac = try String(contentsOfFile: "/sys/class/net/\(lab.appInterface)/address", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let generator = try XCTUnwrap(buildDirectory).appendingPathComponent("sluice-gen").path
        let result = try SluiceTestSupport.run(
            ["ip", "netns", "exec", lab.generatorNamespace, generator, "--interface", lab.generatorInterface,
             "--dst-mac", mac, "--count", "100", "--cpu", "0", "--mode", "live"])
        switch probe.state {
        case .found:
            XCTAssertEqual(result.status, 0, "the probe found live frames: \(probe.detail)\n\(result)")
            XCTAssertTrue(result.stdout.hasPrefix("generator: live-frames"), "\(result)")
        case .missing:
            XCTAssertNotEqual(result.status, 0, "the probe called live frames missing: \(probe.detail)\n\(result)")
            XCTAssertTrue(result.stderr.contains("this kernel refuses live frames"), "\(result)")
        case .unknown:
            XCTFail("the live-frames probe could not run as root: \(probe.detail)")
        }
    }

    func testAnUnknownModeIsAClearError() throws {
        let lab = try XCTUnwrap(lab)
        let generator = try XCTUnwrap(buildDirectory).appendingPathComponent("sluice-gen").path
        let result = try SluiceTestSupport.run(
            ["ip", "netns", "exec", lab.generatorNamespace, generator, "--interface", lab.generatorInterface,
             "--dst-mac", "02:00:00:00:00:01", "--count", "1"],
            environment: ["SLUICE_GEN_MODE": "turbo"])
        XCTAssertNotEqual(result.status, 0, "\(result)")
        XCTAssertTrue(result.stderr.contains("SLUICE_GEN_MODE"), result.stderr)
    }
}
