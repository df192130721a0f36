import Foundation
import SluiceTestSupport
import XCTest

/// The README's demo command, end to end: lab up, sluiced on the lab config,
/// `sluicectl status`, and nothing left behind afterwards.
final class DemoTests: XCTestCase {
    func testDemoRunsAndLeavesNothingBehind() throws {
        let (run, result) = try runDemo(labPrefix: "sdemo")
        XCTAssertEqual(result.status, 0, "\(result)")
        XCTAssertTrue(result.stdout.contains("sluicectl status --socket \(run.socket)"), result.stdout)
        XCTAssertTrue(result.stdout.contains("lab '\(run.labName)' is down"), result.stdout)
        // The newcomer's summary: what was sent, what Sluice received, and the capture read back.
        let sent = try XCTUnwrap(Self.number(after: "sent:", in: result.stdout), result.stdout)
        let received = try XCTUnwrap(Self.number(after: "received:", in: result.stdout), result.stdout)
        XCTAssertGreaterThanOrEqual(sent, 100_000, result.stdout)
        XCTAssertGreaterThan(received, 0, result.stdout)
        XCTAssertLessThanOrEqual(received, sent, result.stdout)
        // In words, as the README shows them.
        let lines = result.stdout.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains("sent:     \(sent) packets from \(run.labName)-gen (trafgen)"), result.stdout)
        let percent = String(format: "%.2f", 100 * Double(received) / Double(sent))
        XCTAssertTrue(lines.contains(
            "received: \(received) packets by Sluice's AF_XDP sockets on \(run.labName)-app (\(percent)%)"), result.stdout)
        XCTAssertTrue(result.stdout.contains("UDP, length 18"), "no captured packet shown:\n\(result.stdout)")
        try assertNothingLeftBehind(by: run)

        // Right after, the same command again: nothing the first run left breaks it.
        let again = try runDemo(run)
        XCTAssertEqual(again.status, 0, "\(again)")
        XCTAssertGreaterThan(Self.number(after: "received:", in: again.stdout) ?? 0, 0, again.stdout)
        try assertNothingLeftBehind(by: run)
    }

    private func assertNothingLeftBehind(by run: DemoRun, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertFalse(try networkNamespaces().contains("\(run.labName)-gen"), file: file, line: line)
        XCTAssertFalse(try linkExists("\(run.labName)-app"), file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.socket), "the daemon left its socket behind",
                       file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.stateDirectory),
                       "the demo's daemon wrote to the config's state directory instead of its own", file: file, line: line)
        let daemons = try SluiceTestSupport.run(["pgrep", "-f", run.configFile])
        XCTAssertFalse(daemons.succeeded, "sluiced still running: \(daemons.stdout)", file: file, line: line)
    }

    /// A demo in which Sluice receives nothing must not pass: here the
    /// interface's prefilter hands all UDP to the kernel.
    func testDemoFailsWhenSluiceReceivesNothing() throws {
        let (run, result) = try runDemo(labPrefix: "sdemn", interfaceLines: #"prefilter_protocols = ["tcp"]"#)
        XCTAssertEqual(result.status, 1, "\(result)")
        XCTAssertEqual(Self.number(after: "received:", in: result.stdout), 0, result.stdout)
        XCTAssertTrue(result.stderr.contains("Sluice received none of the"), result.stderr)
        XCTAssertTrue(result.stdout.contains("lab '\(run.labName)' is down"), "no clean-up after the failure:\n\(result.stdout)")
        XCTAssertFalse(try networkNamespaces().contains("\(run.labName)-gen"))
    }

    /// The integer after `label` at the start of a line of `text`.
    private static func number(after label: String, in text: String) -> Int? {
        for line in text.split(separator: "\n") where line.hasPrefix(label) {
            let digits = line.dropFirst(label.count).drop { $0 == " " }.prefix { $0.isNumber }
            return Int(digits)
        }
        return nil
    }

    private struct DemoRun {
        var labName: String
        var socket: String
        var stateDirectory: String
        var configFile: String
    }

    /// Runs tools/demo on the lab config with its own lab, socket and state
    /// (so a developer's demo running at the same time is not disturbed),
    /// `interfaceLines` added to the `[[interface]]` table; removes all of it.
    private func runDemo(labPrefix: String, interfaceLines: String = "") throws -> (DemoRun, CommandResult) {
        try Privilege.require()
        let labName = uniqueName(labPrefix)
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent(uniqueName("sluice-demo-test"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // After the test's own checks, which look at what the demo left.
        addTeardownBlock {
            try? FileManager.default.removeItem(at: directory)
            _ = try? SluiceTestSupport.run([Lab.script.path, "down", "--name", labName])
        }
        let socket = directory.appendingPathComponent("sluiced.sock").path
        let stateDirectory = directory.appendingPathComponent("state").path
        let config = try labConfig(socket: socket, stateDirectory: stateDirectory) + "\n" + interfaceLines + "\n"
        let configFile = directory.appendingPathComponent("sluice-lab.toml")
        try config.write(to: configFile, atomically: true, encoding: .utf8)

        let run = DemoRun(labName: labName, socket: socket, stateDirectory: stateDirectory, configFile: configFile.path)
        return (run, try runDemo(run))
    }

    /// tools/demo on `run`'s lab and config.
    private func runDemo(_ run: DemoRun) throws -> CommandResult {
        try SluiceTestSupport.run(
            [repositoryRoot.appendingPathComponent("tools/demo").path],
            environment: [
                // The test's products are already built: building again would
                // wait on the lock this test run holds.
                "SLUICE_BIN_DIR": productsDirectory.path,
                "SLUICE_DEMO_CONFIG": run.configFile,
                "SLUICE_LAB_NAME": run.labName,
            ])
    }

    private func labConfig(socket: String, stateDirectory: String) throws -> String {
        let original = try String(
            contentsOf: repositoryRoot.appendingPathComponent("etc/sluice-lab.toml"), encoding: .utf8)
        var replacedSocket = false, replacedState = false
        let lines = original.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            let key = line.split(separator: "=").first?.trimmingCharacters(in: .whitespaces)
            switch key {
            case "socket": replacedSocket = true; return "socket = \"\(socket)\""
            case "state_dir": replacedState = true; return "state_dir = \"\(stateDirectory)\""
            // The lab's metrics port may be in use by a developer's demo.
            case "listen": return "listen = \"127.0.0.1:0\""
            default: return String(line)
            }
        }
        XCTAssertTrue(replacedSocket && replacedState, "etc/sluice-lab.toml has no socket or state_dir key")
        return lines.joined(separator: "\n")
    }
}
