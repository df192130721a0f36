import Foundation
import SluiceNIC
import SluiceTestSupport
import XCTest

/// A real crash: a child process (this test binary, running only the
/// helper below) changes the NIC through NICController and SIGKILLs itself;
/// a new controller then recovers from the journal it left.
final class CrashTests: XCTestCase {
    static let helperVariable = "SLUICE_NIC_CRASH_HELPER"

    func testKilledProcessLeavesAJournalThatTheNextStartRestores() throws {
        // The lab is made here, not in setUp: the SIGKILLed child must not
        // own anything that only its tearDown would remove.
        try Privilege.require()
        let lab = try VethLab()
        defer { lab.tearDown() }
        let state = NSTemporaryDirectory() + uniqueName("sluice-state")
        defer { try? FileManager.default.removeItem(atPath: state) }
        let groBefore = try XCTUnwrap(lab.ethtoolFeatures()["generic-receive-offload"])
        let child = try SluiceTestSupport.run(
            [CommandLine.arguments[0], "SluiceNICTests.CrashTests/testHelperChangesTheNICAndKillsItself"],
            environment: [Self.helperVariable: "\(lab.device) \(state)"])
        // Killed by SIGKILL: no restore, no deinit, no flush ran.
        XCTAssertEqual(child.status, SIGKILL, child.description)
        XCTAssertEqual(try lab.ethtoolChannels()["rx"], 1)
        XCTAssertEqual(try lab.ethtoolFeatures()["generic-receive-offload"], !groBefore)

        let report = try NICController(stateDirectory: state).recoverAtStartup()
        XCTAssertEqual(report.kind, .restored)
        XCTAssertEqual(report.restore?.with(.restored).map(\.message).sorted(), [
            "\(lab.device) channels restored to rx 4",
            "\(lab.device) feature rx-gro restored to \(groBefore ? "on" : "off")",
        ])
        XCTAssertEqual(try lab.ethtoolChannels()["rx"], 4)
        XCTAssertEqual(try lab.ethtoolFeatures()["generic-receive-offload"], groBefore)
    }

    /// Runs only as the child of the test above.
    func testHelperChangesTheNICAndKillsItself() throws {
        guard let arguments = ProcessInfo.processInfo.environment[Self.helperVariable]?.split(separator: " "),
              arguments.count == 2 else {
            throw XCTSkip("helper for testKilledProcessLeavesAJournalThatTheNextStartRestores")
        }
        let (device, state) = (String(arguments[0]), String(arguments[1]))
        let controller = try NICController(stateDirectory: state)
        _ = try controller.setChannels(device, ChannelsChange(rx: 1))
        let gro = try XCTUnwrap(controller.features(device).value["rx-gro"])
        _ = try controller.setFeatures(device, ["gro": !gro.active])
        kill(getpid(), SIGKILL)
    }
}
