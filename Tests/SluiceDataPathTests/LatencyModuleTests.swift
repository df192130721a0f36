import Foundation
import SluiceDataPath
import SluiceModules
import SluiceTestSupport
import XCTest

/// The `latency` module on the veth lab: sluice-gen stamps every frame with
/// its send time (`--stamp`), Sluice's data path receives them, and the
/// module's histogram holds exactly the frames sent, each latency within
/// the time the test itself measured around the sending.
final class LatencyModuleTests: XCTestCase {
    private var lab: Lab?
    private var buildDirectory: URL?

    override func setUpWithError() throws {
        try Privilege.require()
        setenv("LIBXDP_SKIP_DISPATCHER", "1", 1)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("sluice-gen"))
        buildDirectory = directory
        try SluiceTestSupport.run(
            [repositoryRoot.appendingPathComponent("tools/gen/build").path, directory.path], check: true)
    }

    override func tearDown() {
        try? lab?.down()
        if let buildDirectory { try? FileManager.default.removeItem(at: buildDirectory) }
    }

    func testInlineStampedFramesFillTheHistogram() throws {
        try stampedFramesFillTheHistogram(mode: .inline)
    }

    func testPipelinedStampedFramesFillTheHistogram() throws {
        try stampedFramesFillTheHistogram(mode: .pipelined)
    }

    private func stampedFramesFillTheHistogram(mode: ProcessingMode) throws {
        let lab = try Lab.up(queues: 2, prefix: "slat")
        self.lab = lab
        var config = DataPathConfig(interface: lab.appInterface)
        config.mode = mode
        config.bindMode = .copy
        let module = LatencyModule()
        // Queue 0 only: the generator on CPU 0 sends there either way.
        let pipeline = try Pipeline(config: config, bindings: [.identity(channel: 0)]) { _ in [module] }
        defer { pipeline.stop() }
        let mac = try String(contentsOfFile: "/sys/class/net/\(lab.appInterface)/address", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let generator = try XCTUnwrap(buildDirectory).appendingPathComponent("sluice-gen").path
        // A rate a debug build's RX thread keeps up with: a frame the kernel
        // drops for a full ring would never reach the module.
        let frames = 10_000
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let started = UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
        let result = try SluiceTestSupport.run(
            ["ip", "netns", "exec", lab.generatorNamespace, generator, "--interface", lab.generatorInterface,
             "--dst-mac", mac, "--count", "\(frames)", "--rate", "20000", "--duration", "20", "--flows", "8",
             "--cpu", "0", "--stamp"])
        XCTAssertEqual(result.status, 0, "\(result)")
        XCTAssertTrue(result.stdout.contains("sent \(frames) frames in "), result.stdout)
        do {
            try waitUntil("\(frames) stamped frames in the histogram", timeout: .seconds(20)) {
                module.snapshot().counters["stamped"] ?? 0 >= UInt64(frames)
            }
        } catch {
            XCTFail("\(error): \(module.snapshot().counters), \(pipeline.statistics().sockets)")
            throw error
        }
        clock_gettime(CLOCK_MONOTONIC, &now)
        let elapsed = UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec) - started

        let snapshot = module.snapshot()
        XCTAssertEqual(snapshot.kind, "latency")
        XCTAssertEqual(snapshot.counters["stamped"], UInt64(frames), "\(snapshot)")
        XCTAssertEqual(snapshot.counters["unstamped"], 0, "\(snapshot)")
        XCTAssertEqual(snapshot.counters["future"], 0, "a stamp later than its receive time: \(snapshot)")
        let bucketed = snapshot.rows.compactMap { UInt64($0["packets"] ?? "") }.reduce(0, +)
        XCTAssertEqual(bucketed, UInt64(frames), "the buckets hold every stamped frame: \(snapshot.rows)")
        let maximum = try XCTUnwrap(snapshot.counters["max_ns"])
        XCTAssertGreaterThan(maximum, 0)
        XCTAssertLessThanOrEqual(maximum, elapsed, "no frame waited longer than the test ran")
        let p50 = try XCTUnwrap(snapshot.counters["p50_ns"]), p90 = try XCTUnwrap(snapshot.counters["p90_ns"])
        let p99 = try XCTUnwrap(snapshot.counters["p99_ns"])
        XCTAssertTrue(0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= maximum, "\(snapshot.counters)")
        let sum = try XCTUnwrap(snapshot.counters["sum_ns"])
        XCTAssertLessThanOrEqual(sum, maximum * UInt64(frames))
        for row in snapshot.rows {
            let from = try XCTUnwrap(UInt64(row["from_ns"] ?? "")), to = try XCTUnwrap(UInt64(row["to_ns"] ?? ""))
            XCTAssertTrue(from <= to && from <= maximum, "\(row)")
        }
        XCTAssertEqual(pipeline.statistics().sockets.first?.malformed, 0)
    }
}
