import Foundation
import SluiceDataPath
import SluiceModules
import SluiceTestSupport
import XCTest

/// The RX thread returns a processed batch's frames straight into the fill
/// ring when it has room for the batch (always with a fill ring that holds
/// every frame, sluiced's default geometry), and through its free-frame stack
/// otherwise. Both paths must hand every frame back exactly once: with a UMEM
/// of 128 frames each frame is reused many times, so frames given back twice
/// show up as invalid frames, and frames kept (checked: one in four) leave
/// none to receive a slow wave of packets into afterwards.
final class FillRingRecyclingTests: XCTestCase {
    private var lab: Lab?

    override func setUpWithError() throws {
        try Privilege.require()
        setenv("LIBXDP_SKIP_DISPATCHER", "1", 1)
    }

    override func tearDownWithError() throws {
        try lab?.down()
    }

    func testInlineFillRingHoldingEveryFrame() throws {
        try everyFrameComesBack(mode: .inline, fillRing: 128, verdict: .pass)
    }

    func testPipelinedFillRingHoldingEveryFrameWithDrops() throws {
        try everyFrameComesBack(mode: .pipelined, fillRing: 128, verdict: .drop)
    }

    func testInlineFillRingSmallerThanTheUMEM() throws {
        try everyFrameComesBack(mode: .inline, fillRing: 64, verdict: .drop)
    }

    private func everyFrameComesBack(mode: ProcessingMode, fillRing: UInt32, verdict: Verdict) throws {
        let lab = try Lab.up(queues: 2, prefix: "sfr")
        self.lab = lab
        var config = DataPathConfig(interface: lab.appInterface)
        config.mode = mode
        config.bindMode = .copy
        config.geometry.frameSize = 2048
        config.geometry.frameCount = 128
        config.geometry.fillRingSize = fillRing
        config.geometry.rxRingSize = 64
        let tally = TallyModule(verdict: verdict)
        let pipeline = try Pipeline(
            config: config, bindings: [.identity(channel: 0), .identity(channel: 1)], makeModules: { _ in [tally] })
        defer { pipeline.stop() }
        let perWorker = 3000
        let flows = UDPFlows(lab: lab, ports: [9000, 9001])
        try flows.send(perWorker: perWorker)
        let sent = UInt64(2 * perWorker * flows.ports.count)
        try waitUntil("\(sent) packets accounted for", timeout: .seconds(20)) {
            pipeline.statistics().sockets.reduce(0) { $0 + $1.accounted } >= sent
        }
        try waitUntil("the module saw every received packet") {
            UInt64(tally.total) == pipeline.statistics().sockets.reduce(0) { $0 + $1.rxPackets }
        }
        let sockets = pipeline.statistics().sockets
        XCTAssertEqual(sockets.reduce(0) { $0 + $1.accounted }, sent, "\(sockets)")
        XCTAssertEqual(sockets.map(\.invalidFrames), [0, 0], "no frame refused or given back twice")
        let decided = verdict == .drop ? sockets.map(\.dropped) : sockets.map(\.passed)
        XCTAssertEqual(decided, sockets.map(\.rxPackets), "every received frame got its verdict counted")

        // The bursts above overrun rings this small (the kernel drops and
        // counts), so their count says little about lost frames. A slow wave
        // afterwards must arrive whole: a UMEM that leaked frames has none
        // left to receive it into.
        let before = tally.total
        let slow = 200
        let frame = try XCTUnwrap(flows.frames().first)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("trafgen") + ".cfg")
        try ("{ " + frame.map { String(format: "0x%02x", $0) }.joined(separator: ", ") + " }\n")
            .write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        try lab.inGenerator(
            ["trafgen", "--dev", lab.generatorInterface, "--in", file.path, "--num", "\(slow)", "--gap", "200us",
             "--cpus", "1", "--no-sock-mem", "--notouch-irq", "--no-cpu-stats"], check: true)
        try waitUntil("the slow wave of \(slow) packets received whole", timeout: .seconds(10)) {
            tally.total - before >= slow
        }
        XCTAssertEqual(tally.total - before, slow, "\(pipeline.statistics().sockets)")
    }
}
