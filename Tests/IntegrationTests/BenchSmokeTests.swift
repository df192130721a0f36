import Foundation
import SluiceTestSupport
import XCTest

/// `tools/bench/run --quick` end to end so the benchmark never rots: the
/// generator (live frames, or AF_XDP TX where the kernel refuses them), the XDP_DROP limit, sluiced inline and pipelined with
/// `count`, the table with numbers, and no lab left behind. No rate targets are
/// asserted: two shared cores make rates meaningless in a test.
final class BenchSmokeTests: XCTestCase {
    func testQuickBenchmarkWritesATableWithNumbers() throws {
        let table = try runQuickBenchmark()
        // Which generator sent: live frames, or AF_XDP TX where the kernel refuses them.
        XCTAssertTrue(table.contains("\nGenerator: live-frames") || table.contains("\nGenerator: af_xdp-tx"),
                      "the report does not say which generator sent:\n\(table)")
    }

    /// The fallback a kernel that refuses live frames gets, forced here so it
    /// runs on every machine: the report names it and says it is slower, and
    /// every receiver still gets packets.
    func testQuickBenchmarkWithTheFallbackGeneratorSaysSo() throws {
        let table = try runQuickBenchmark(generatorMode: "afxdp")
        XCTAssertTrue(table.contains("\nGenerator: af_xdp-tx (copy mode, queue 0; forced by SLUICE_GEN_MODE=afxdp).\n"),
                      "the report does not name the fallback generator:\n\(table)")
        XCTAssertTrue(table.contains("\naf_xdp-tx is slower than live frames"),
                      "the report does not say the fallback is slower:\n\(table)")
    }

    /// Runs `tools/bench/run --quick` on its own lab (SLUICE_GEN_MODE =
    /// `generatorMode` when given), checks every row has numbers, and returns the report.
    private func runQuickBenchmark(generatorMode: String? = nil) throws -> String {
        try Privilege.require()
        let labName = uniqueName("sbn")
        let output = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("sluice-bench") + ".md")
        defer {
            try? FileManager.default.removeItem(at: output)
            _ = try? SluiceTestSupport.run([Lab.script.path, "down", "--name", labName])
        }
        let result = try SluiceTestSupport.run(
            [repositoryRoot.appendingPathComponent("tools/bench/run").path, "--quick", "--output", output.path],
            environment: [
                // Already built by this test run: building again would wait on its lock.
                "SLUICE_BIN_DIR": productsDirectory.path,
                "SLUICE_BENCH_LAB": labName,
            ].merging(generatorMode.map { ["SLUICE_GEN_MODE": $0] } ?? [:]) { $1 })
        XCTAssertEqual(result.status, 0, "\(result)")

        let table = try String(contentsOf: output, encoding: .utf8)
        let kernel = try SluiceTestSupport.run(["uname", "-r"], check: true).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(table.contains("Kernel \(kernel),"), "no kernel line in:\n\(table)")
        // | case | offered | received Mpps | sent | received | lost | CPU ns/packet | wake-ups/1k packets |
        let rows = table.split(separator: "\n").map { $0.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) } }
        func row(_ name: String, _ offered: String) throws -> [String] {
            try XCTUnwrap(rows.first { $0.count >= 7 && $0[0] == name && $0[1] == offered }, "no row \(name) \(offered) in:\n\(table)")
        }
        for (name, offered) in [("limit", "max"), ("inline", "max"), ("count", "0.5 Mpps")] {
            let cells = try row(name, offered)
            let mpps = try XCTUnwrap(Double(cells[2]), "\(name): received Mpps '\(cells[2])' is not a number")
            let sent = try XCTUnwrap(UInt64(cells[3]), "\(name): sent '\(cells[3])' is not a number")
            let received = try XCTUnwrap(UInt64(cells[4]), "\(name): received '\(cells[4])' is not a number")
            XCTAssertGreaterThan(sent, 0, "\(name): the generator sent nothing")
            XCTAssertGreaterThan(received, 0, "\(name): nothing received")
            XCTAssertLessThanOrEqual(received, sent, "\(name): received more than sent")
            XCTAssertGreaterThan(mpps, 0, "\(name): median rate 0")
            if name != "limit" {
                XCTAssertNotNil(Double(cells[6]), "\(name): CPU ns/packet '\(cells[6])' is not a number")
                XCTAssertNotNil(Double(cells.count > 7 ? cells[7] : ""), "\(name): no wake-ups per 1k packets in \(cells)")
            }
            if offered == "0.5 Mpps" {
                // The generator paces itself: 2 s at 0.5 Mpps is at most 1 M frames
                // (plus the slice it sends ahead), and counts only what it sent.
                XCTAssertLessThanOrEqual(sent, 1_010_000, "\(name): the generator sent more than its rate allows")
            }
        }
        XCTAssertEqual(try SluiceTestSupport.run(["ip", "netns", "list"]).stdout.contains("\(labName)-gen"), false,
                       "tools/bench/run left its lab's namespace behind")
        return table
    }
}
