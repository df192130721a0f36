import Foundation
import SluiceTestSupport
import XCTest

/// The README's demo command, end to end: lab up, sluiced on the lab config,
/// `sluicectl status`, and nothing left behind afterwards.
final class DemoTests: XCTestCase {
    func testDemoRunsAndLeavesNothingBehind() throws {
        try Privilege.require()
        let labName = uniqueName("sdemo")
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent(uniqueName("sluice-demo-test"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer {
            try? FileManager.default.removeItem(at: directory)
            _ = try? SluiceTestSupport.run([Lab.script.path, "down", "--name", labName])
        }
        // The lab config with its own socket and state, so a developer's demo
        // running at the same time is not disturbed.
        let socket = directory.appendingPathComponent("sluiced.sock").path
        let config = try labConfig(socket: socket, stateDirectory: directory.appendingPathComponent("state").path)
        let configFile = directory.appendingPathComponent("sluice-lab.toml")
        try config.write(to: configFile, atomically: true, encoding: .utf8)

        let result = try SluiceTestSupport.run(
            [repositoryRoot.appendingPathComponent("tools/demo").path],
            environment: [
                // The test's products are already built: building again would
                // wait on the lock this test run holds.
                "SLUICE_BIN_DIR": productsDirectory.path,
                "SLUICE_DEMO_CONFIG": configFile.path,
                "SLUICE_LAB_NAME": labName,
            ])
        XCTAssertEqual(result.status, 0, "\(result)")
        XCTAssertTrue(result.stdout.contains("sluicectl status --socket \(socket)"), result.stdout)
        XCTAssertTrue(result.stdout.contains("lab '\(labName)' is down"), result.stdout)

        XCTAssertFalse(try networkNamespaces().contains("\(labName)-gen"))
        XCTAssertFalse(try linkExists("\(labName)-app"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: socket), "the daemon left its socket behind")
        let daemons = try SluiceTestSupport.run(["pgrep", "-f", configFile.path])
        XCTAssertFalse(daemons.succeeded, "sluiced still running: \(daemons.stdout)")
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
