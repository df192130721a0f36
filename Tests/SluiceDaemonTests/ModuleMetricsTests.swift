import SluiceProtocol
import XCTest

@testable import SluiceDaemon

/// How module snapshots become Prometheus families: running totals are
/// counters, sizes and the latency module's levels are gauges.
final class ModuleMetricsTests: XCTestCase {
    private func report(_ modules: [ModuleSnapshot]) -> PipelineReport {
        PipelineReport(
            interface: "eth7", running: true, plugin: "generic", startedAt: "2026-12-07T04:00:00Z",
            unreadAddedQueues: nil, mappings: [], totals: .init(), modules: modules,
            statistics: PipelineStatistics(interface: "eth7", mode: .inline, attachMode: .native, programID: 1,
                                           sockets: [], xdp: []))
    }

    func testLatencyPercentilesAndMaximumAreGaugesNotCounters() {
        let latency = ModuleSnapshot(kind: ModuleKind.latency.rawValue, counters: [
            "stamped": 1000, "unstamped": 3, "future": 0, "sum_ns": 90_000_000,
            "p50_ns": 61_440, "p90_ns": 1_441_792, "p99_ns": 4_194_304, "max_ns": 10_262_600,
        ])
        let count = ModuleSnapshot(kind: ModuleKind.count.rawValue, counters: ["packets": 1003, "flows": 2])
        var out = PrometheusText()
        Daemon.writeModules([report([count, latency])], to: &out)
        let lines = Set(out.text.split(separator: "\n").map(String.init))

        XCTAssertTrue(lines.contains("# TYPE sluice_latency_nanoseconds gauge"), out.text)
        for (statistic, value) in [("p50", 61_440), ("p90", 1_441_792), ("p99", 4_194_304), ("max", 10_262_600)] {
            XCTAssertTrue(
                lines.contains("sluice_latency_nanoseconds{iface=\"eth7\",position=\"1\",statistic=\"\(statistic)\"} \(value)"),
                "\(statistic): \(out.text)")
        }
        // Running totals stay counters; no level is exported as one.
        XCTAssertTrue(lines.contains(
            "sluice_module_counter_total{iface=\"eth7\",position=\"1\",module=\"latency\",counter=\"stamped\"} 1000"))
        XCTAssertTrue(lines.contains(
            "sluice_module_counter_total{iface=\"eth7\",position=\"1\",module=\"latency\",counter=\"sum_ns\"} 90000000"))
        XCTAssertFalse(out.text.contains("counter=\"p50_ns\"") || out.text.contains("counter=\"max_ns\""), out.text)
        XCTAssertTrue(lines.contains(
            "sluice_module_counter_total{iface=\"eth7\",position=\"0\",module=\"count\",counter=\"packets\"} 1003"))
        XCTAssertTrue(lines.contains(
            "sluice_module_gauge{iface=\"eth7\",position=\"0\",module=\"count\",gauge=\"flows\"} 2"))
    }

    /// Only the latency module's levels go into the latency family: another
    /// module with a key of the same name keeps it where it was.
    func testSameNamesOfOtherModulesStayCounters() {
        let other = ModuleSnapshot(kind: ModuleKind.count.rawValue, counters: ["max_ns": 5])
        var out = PrometheusText()
        Daemon.writeModules([report([other])], to: &out)
        XCTAssertTrue(out.text.contains(
            "sluice_module_counter_total{iface=\"eth7\",position=\"0\",module=\"count\",counter=\"max_ns\"} 5"), out.text)
        XCTAssertFalse(out.text.contains("sluice_latency_nanoseconds{"), out.text)
    }
}
