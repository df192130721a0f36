import Foundation
import SluiceControl
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
    private var daemon: DaemonProcess?
    private var plugins: PluginDirectory?

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
        daemon?.stop()
        plugins?.remove()
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

    /// A kernel that refuses live frames, made here by tools/refuse-live-frames
    /// (a seccomp supervisor answering EPERM to BPF_PROG_RUN with live frames
    /// only, as those kernels do): `auto` falls back by itself and says why,
    /// every frame arrives, and the daemon's probe calls live frames missing
    /// with the kernel's answer, not unknown.
    func testOnAKernelThatRefusesLiveFramesAutoFallsBackAndTheProbeSaysMissing() throws {
        let lab = try XCTUnwrap(lab)
        let refuse = repositoryRoot.appendingPathComponent("tools/refuse-live-frames").path
        let before = try lab.appReceivedPerQueue()
        let mac = try String(contentsOfFile: "/sys/class/net/\(lab.appInterface)/address", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let generator = try XCTUnwrap(buildDirectory).appendingPathComponent("sluice-gen").path
        let result = try SluiceTestSupport.run(
            [refuse, "ip", "netns", "exec", lab.generatorNamespace, generator, "--interface", lab.generatorInterface,
             "--dst-mac", mac, "--count", "20000", "--rate", "200000", "--duration", "20", "--flows", "8",
             "--cpu", "0"])
        XCTAssertEqual(result.status, 0, "\(result)")
        let method = result.stdout.split(separator: "\n").filter { $0.hasPrefix("generator: ") }
        XCTAssertEqual(method, ["generator: af_xdp-tx (copy mode, queue 0; live frames refused: Operation not permitted)"],
                       "\(result)")
        var received: [Int] = []
        try waitUntil("20000 frames counted by the receiver", timeout: .seconds(10)) {
            received = zip(try lab.appReceivedPerQueue(), before).map { $0 - $1 }
            return received.reduce(0, +) >= 20_000
        }
        XCTAssertEqual(received, [20_000, 0], "frames per rx queue of the receiver")

        let daemon = try DaemonProcess()
        self.daemon = daemon
        try daemon.start(launcher: [refuse])
        let features = try XCTUnwrap(daemon.call("doctor")["result"]?["kernel_features"]?.arrayValue)
        let live = try XCTUnwrap(features.first { $0["name"]?.stringValue == "xdp_live_frames" }, "\(features)")
        XCTAssertEqual(live["state"]?.stringValue, "missing", "\(live)")
        XCTAssertTrue(live["detail"]?.stringValue?.contains("Operation not permitted") == true, "\(live)")
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
        case .unknown where probe.detail.hasPrefix("BPF_PROG_RUN of an XDP program fails even without live frames"):
            // BPF_PROG_RUN refused outright (a seccomp policy, a locked-down
            // kernel): live frames cannot run either, and `auto` falls back
            // (testAutoNamesTheMethodItUsedAndEveryFrameArrives).
            XCTAssertNotEqual(result.status, 0, "BPF_PROG_RUN is refused: \(probe.detail)\n\(result)")
            XCTAssertTrue(result.stderr.contains("BPF_PROG_RUN with live frames: "), "\(result)")
        case .unknown:
            XCTFail("the live-frames probe could not run as root: \(probe.detail)")
        }
    }

    /// `--size 9000`: larger than live frames take, so `auto` sends with
    /// AF_XDP multi-buffer TX (each frame a chain of 2048-byte chunks) and
    /// says so; a Sluice pipeline with multi-buffer on the receiving end
    /// (MTU 9000 on both ends) counts every frame, each 9000 bytes, as a chain.
    func testJumboSizeSendsChainsThatArriveWhole() throws {
        for name in [KernelFeature.Name.xdpMultiBuffer, .xskMultiBuffer] {
            let feature = KernelFeatures.detected(name)
            guard feature.state == .found else { throw XCTSkip("this kernel has no \(feature.title): \(feature.detail)") }
        }
        let lab = try XCTUnwrap(lab)
        // veth caps the MTU of a device whose XDP program is not frags-aware: the drop program goes first.
        try lab.inApp(["ip", "link", "set", "dev", lab.appInterface, "xdp", "off"], check: true)
        try lab.inApp(["ip", "link", "set", "dev", lab.appInterface, "mtu", "9000"], check: true)
        try lab.inGenerator(["ip", "link", "set", "dev", lab.generatorInterface, "mtu", "9000"], check: true)
        let plugins = try PluginDirectory.withShippedPlugins()
        self.plugins = plugins
        let daemon = try DaemonProcess(extraConfig: DaemonProcess.pipelineConfig(
            pluginDirectory: plugins.path, interface: lab.appInterface, mode: "inline", modules: """
                autostart = true

                [[pipeline.modules]]
                kind = "count"
                """, interfaceOptions: "prefilter_protocols = [\"udp\"]"))
        self.daemon = daemon
        try daemon.start()
        try daemon.waitForPipeline()

        let count = 2000
        let mac = try lab.inApp(["cat", "/sys/class/net/\(lab.appInterface)/address"], check: true).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let generator = try XCTUnwrap(buildDirectory).appendingPathComponent("sluice-gen").path
        let result = try SluiceTestSupport.run(
            ["ip", "netns", "exec", lab.generatorNamespace, generator, "--interface", lab.generatorInterface,
             "--dst-mac", mac, "--size", "9000", "--count", "\(count)", "--rate", "20000", "--duration", "20",
             "--flows", "8", "--cpu", "0"])
        XCTAssertEqual(result.status, 0, "\(result)")
        let method = result.stdout.split(separator: "\n").filter { $0.hasPrefix("generator: ") }
        XCTAssertEqual(method, [
            "generator: af_xdp-tx (copy mode, multi-buffer: 5 chunks a frame, queue 0; "
                + "frames of 9000 bytes are larger than live frames take (1514))",
        ], result.stdout)
        XCTAssertTrue(result.stdout.contains("sent \(count) frames in "), result.stdout)

        func pipeline() throws -> JSONValue? { try daemon.call("stats.get")["result"]?["pipelines"]?.arrayValue?.first }
        func counted(_ name: String) throws -> Int? {
            try pipeline()?["modules"]?.arrayValue?.first { $0["kind"] == "count" }?["counters"]?[name]?.integer(as: Int.self)
        }
        try waitUntil("\(count) frames counted", timeout: .seconds(10)) { try counted("packets") ?? 0 >= count }
        XCTAssertEqual(try counted("packets"), count)
        XCTAssertEqual(try counted("bytes"), count * 9000, "every frame whole")
        XCTAssertEqual(try counted("flows"), 8)
        XCTAssertEqual(try counted("malformed"), 0)
        let sockets = try XCTUnwrap(pipeline()?["statistics"]?["sockets"]?.arrayValue)
        XCTAssertEqual(sockets.reduce(0) { $0 + ($1["multi_buffer_packets"]?.integer(as: Int.self) ?? 0) }, count, "as chains")
    }

    /// Sizes the generator cannot send are refused with the numbers: above
    /// 9000 always, above 1514 with live frames (the kernel runs none larger
    /// than a page).
    func testSizesItCannotSendAreClearErrors() throws {
        let lab = try XCTUnwrap(lab)
        let generator = try XCTUnwrap(buildDirectory).appendingPathComponent("sluice-gen").path
        func run(_ arguments: [String]) throws -> CommandResult {
            try SluiceTestSupport.run(
                ["ip", "netns", "exec", lab.generatorNamespace, generator, "--interface", lab.generatorInterface,
                 "--dst-mac", "02:00:00:00:00:01", "--count", "1"] + arguments)
        }
        let tooLarge = try run(["--size", "9001"])
        XCTAssertNotEqual(tooLarge.status, 0, "\(tooLarge)")
        XCTAssertTrue(tooLarge.stderr.contains("--size: frame size out of range (42-9000)"), tooLarge.stderr)
        let live = try run(["--size", "1515", "--mode", "live"])
        XCTAssertNotEqual(live.status, 0, "\(live)")
        XCTAssertTrue(live.stderr.contains("live frames carry at most 1514 bytes"), live.stderr)
        XCTAssertTrue(live.stderr.contains("--mode afxdp"), live.stderr)
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
