import Foundation
import SluiceControl
import SluiceTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Levels from the peer's credentials, with real throw-away users and groups
/// and the real sluicectl running as them.
final class PermissionTests: XCTestCase {
    private var created: (users: [String], groups: [String]) = ([], [])
    private var daemon: DaemonProcess?

    override func tearDown() {
        daemon?.stop()
        for user in created.users { _ = try? runCommand(["userdel", user]) }
        for group in created.groups { _ = try? runCommand(["groupdel", group]) }
    }

    private func makeGroup(_ prefix: String) throws -> String {
        let name = uniqueName(prefix)
        try runCommand(["groupadd", "--system", name], check: true)
        created.groups.append(name)
        return name
    }

    private func makeUser(_ prefix: String, groups: [String]) throws -> String {
        let name = uniqueName(prefix)
        var argv = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        if !groups.isEmpty { argv += ["--groups", groups.joined(separator: ",")] }
        try runCommand(argv + [name], check: true)
        created.users.append(name)
        return name
    }

    /// Runs the copied sluicectl as `user` with the groups /etc/group gives it.
    private func sluicectl(as user: String, _ arguments: [String], daemon: DaemonProcess) throws -> CommandResult {
        try runCommand(["setpriv", "--reuid=\(user)", "--regid=\(user)", "--init-groups",
                 daemon.directory + "/sluicectl", "--socket", daemon.socketPath] + arguments)
    }

    func testLevelsFollowSocketAndAdminGroups() throws {
        try Privilege.require("root (creates users and groups)")
        let socketGroup = try makeGroup("slsock")
        let adminGroup = try makeGroup("sladm")
        let reader = try makeUser("slread", groups: [socketGroup])
        let admin = try makeUser("sladmin", groups: [socketGroup, adminGroup])
        let outsider = try makeUser("slout", groups: [])
        // useradd --system with no -g gives each user its own primary group.
        created.groups.append(contentsOf: [reader, admin, outsider])

        let daemon = try DaemonProcess(control: [
            "socket_group = \"\(socketGroup)\"", "admin_group = \"\(adminGroup)\"",
        ])
        self.daemon = daemon
        try FileManager.default.copyItem(atPath: DaemonProcess.sluicectlPath, toPath: daemon.directory + "/sluicectl")
        try daemon.start()

        let readStatus = try sluicectl(as: reader, ["--json", "status"], daemon: daemon)
        XCTAssertEqual(readStatus.status, 0, readStatus.description)
        XCTAssertEqual(try JSONValue.parse(Array(readStatus.stdout.utf8))["result"]?["you"]?["level"], "read")

        let denied = try sluicectl(as: reader, ["shutdown"], daemon: daemon)
        XCTAssertEqual(denied.status, 1, denied.description)
        XCTAssertTrue(denied.stderr.contains("permission_denied"), denied.stderr)
        XCTAssertTrue(daemon.isRunning)
        XCTAssertEqual(try daemon.call("status")["ok"], true)

        let adminStatus = try sluicectl(as: admin, ["--json", "status"], daemon: daemon)
        XCTAssertEqual(adminStatus.status, 0, adminStatus.description)
        XCTAssertEqual(try JSONValue.parse(Array(adminStatus.stdout.utf8))["result"]?["you"]?["level"], "admin",
                       "admin through a supplementary group")

        let refused = try sluicectl(as: outsider, ["status"], daemon: daemon)
        XCTAssertEqual(refused.status, 3, refused.description)
        XCTAssertTrue(refused.stderr.contains("permission denied"), refused.stderr)

        let stop = try sluicectl(as: admin, ["shutdown"], daemon: daemon)
        XCTAssertEqual(stop.status, 0, stop.description)
        XCTAssertEqual(try daemon.waitForExit(), 0)
    }
}
