import Foundation
import SluiceDataPath
import SluiceTestSupport
import XCTest

/// Throughput under trafgen at full speed, and the accounting invariant
/// under load: every frame sent is received by a socket or counted by the
/// kernel as dropped for it (`XDP_STATISTICS`; veth's own rx_dropped counts
/// the same failed redirects again, so it is shown, not added). Opt in with
/// SLUICE_DP_BENCH=1 (best in a release build: `swift test -c release`).
final class ThroughputBenchmark: XCTestCase {
    func testThroughputAndAccountingUnderLoad() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["SLUICE_DP_BENCH"] == "1", "set SLUICE_DP_BENCH=1")
        try Privilege.require()
        for mode in ProcessingMode.allCases {
            let lab = try Lab.up(queues: 2, prefix: "sdpb")
            defer { try? lab.down() }
            var config = DataPathConfig(interface: lab.appInterface)
            config.mode = mode
            config.bindMode = .copy
            let tally = TallyModule()
            let pipeline = try Pipeline(
                config: config, bindings: [.identity(channel: 0), .identity(channel: 1)], makeModules: { _ in [tally] })
            defer { pipeline.stop() }
            let perWorker = 1_000_000
            let clock = ContinuousClock()
            let started = clock.now
            try UDPFlows(lab: lab, ports: [9000]).send(perWorker: perWorker)
            let elapsed = clock.now - started
            let sent = UInt64(2 * perWorker)
            let vethDrops = { () throws -> UInt64 in
                let app = try lab.inApp(["cat", "/sys/class/net/\(lab.appInterface)/statistics/rx_dropped"], check: true).stdout
                let gen = try lab.inGenerator(["cat", "/sys/class/net/\(lab.generatorInterface)/statistics/tx_dropped"], check: true).stdout
                return (UInt64(app.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0)
                    + (UInt64(gen.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0)
            }
            try waitUntil("every frame accounted for", timeout: .seconds(30)) {
                pipeline.statistics().sockets.reduce(0) { $0 + $1.accounted } >= sent
            }
            let sockets = pipeline.statistics().sockets
            let received = sockets.reduce(0) { $0 + $1.rxPackets }
            let kernelDrops = sockets.reduce(0) { $0 + $1.kernel.rxDropped + $1.kernel.rxRingFull }
            let handoff = sockets.reduce(0) { $0 + $1.handoffDrops }
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            print("""
                benchmark \(mode.rawValue): sent \(sent) in \(String(format: "%.2f", seconds)) s \
                (\(String(format: "%.2f", Double(sent) / seconds / 1e6)) Mpps offered); received \(received), \
                kernel socket drops \(kernelDrops), veth drops \(try vethDrops()), hand-off drops \(handoff)
                """)
            XCTAssertEqual(received + kernelDrops, sent)
            try waitUntil("modules saw every frame the hand-off kept") { UInt64(tally.total) == received - handoff }
        }
    }
}
