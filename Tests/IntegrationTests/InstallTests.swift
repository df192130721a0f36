import Foundation
import SluiceControl
import SluiceTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// tools/install and tools/uninstall into a temporary --destdir with the
/// test build's binaries (no release build), the installed daemon on a lab,
/// and the unit under `systemd-analyze verify`.
final class InstallTests: XCTestCase {
    private var destdir: String!
    private var lab: Lab?
    private var daemon: DaemonProcess?

    private static let prefix = "/usr"
    /// Every file install adds, with its mode; the config is apart (uninstall keeps it).
    private static let installedFiles: [String: mode_t] = [
        "/usr/bin/sluiced": 0o755,
        "/usr/bin/sluicectl": 0o755,
        "/usr/lib/sluice/plugins/libsluice_generic.so": 0o644,
        "/usr/lib/sluice/plugins/libsluice_mlx5.so": 0o644,
        "/usr/include/sluice/driver_plugin.h": 0o644,
        "/lib/systemd/system/sluiced.service": 0o644,
        "/usr/lib/sluice/install-manifest": 0o644,
    ]
    private static let config = "/etc/sluice/sluice.toml"

    override func setUpWithError() throws {
        // Root-owned files and the plugin host's ownership checks need root.
        try Privilege.require()
        var template = Array("/tmp/sluice-install-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw InstallTestError("mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        destdir = String(cString: made)
        // The plugin host refuses a plugin directory others could write into, up the chain.
        chmod(destdir, 0o755)
    }

    override func tearDown() {
        daemon?.stop()
        try? lab?.down()
        if let destdir { try? FileManager.default.removeItem(atPath: destdir) }
    }

    private func tool(_ name: String, _ arguments: [String]) throws -> CommandResult {
        try runCommand(
            [repositoryRoot.appendingPathComponent("tools/\(name)").path, "--prefix", Self.prefix, "--destdir", destdir]
                + arguments)
    }

    private func install() throws {
        let result = try tool("install", ["--bin-dir", productsDirectory.path])
        XCTAssertTrue(result.succeeded, "\(result)")
    }

    /// Every path under the destdir, relative to it ("/usr/bin/sluiced").
    private func tree() throws -> Set<String> {
        let enumerator = FileManager.default.enumerator(atPath: destdir)
        var paths = Set<String>()
        while let path = enumerator?.nextObject() as? String { paths.insert("/" + path) }
        return paths
    }

    private func status(_ path: String) throws -> stat {
        var info = stat()
        guard lstat(destdir + path, &info) == 0 else {
            throw InstallTestError("\(path) is not installed: \(String(cString: strerror(errno)))")
        }
        return info
    }

    private func contents(_ path: String) throws -> String {
        try String(contentsOfFile: destdir + path, encoding: .utf8)
    }

    func testInstallAddsEveryFileWithItsModeAndUninstallRemovesExactlyThat() throws {
        try install()
        for (path, mode) in Self.installedFiles.merging([Self.config: 0o644], uniquingKeysWith: { $1 }) {
            let info = try status(path)
            XCTAssertEqual(info.st_mode & 0o7777, mode, "mode of \(path)")
            XCTAssertEqual(info.st_mode & S_IFMT, S_IFREG, "\(path) is a regular file")
            XCTAssertEqual(info.st_uid, 0, "\(path) is owned by root")
        }
        XCTAssertEqual(try status("/usr/lib/sluice/plugins").st_mode & 0o7777, 0o755)
        // The installed binaries are the built ones, byte for byte.
        XCTAssertEqual(
            FileManager.default.contents(atPath: destdir + "/usr/bin/sluiced"),
            FileManager.default.contents(atPath: DaemonProcess.sluicedPath))
        XCTAssertTrue(try contents(Self.config).contains("\ndir = \"/usr/lib/sluice/plugins\"\n"))
        let unit = try contents("/lib/systemd/system/sluiced.service")
        XCTAssertTrue(unit.contains("\nExecStart=/usr/bin/sluiced --config /etc/sluice/sluice.toml\n"), unit)
        XCTAssertTrue(unit.contains("\nType=notify\n"))

        let installed = try tree()
        let expectedFiles = Set(Self.installedFiles.keys).union([Self.config])
        XCTAssertEqual(installed.filter { !isDirectory($0) }, expectedFiles)

        // A second install refuses rather than losing track of the first.
        let again = try tool("install", ["--bin-dir", productsDirectory.path])
        XCTAssertFalse(again.succeeded)
        XCTAssertTrue(again.stderr.contains("already installed"), again.stderr)

        let uninstall = try tool("uninstall", [])
        XCTAssertTrue(uninstall.succeeded, "\(uninstall)")
        XCTAssertEqual(try tree(), ["/etc", "/etc/sluice", Self.config], "only the config is left")

        let purge = try tool("install", ["--bin-dir", productsDirectory.path])
        XCTAssertTrue(purge.succeeded, "\(purge)")
        XCTAssertTrue(purge.stderr.contains("keeping the existing"), "an existing config is never overwritten")
        XCTAssertTrue(try tool("uninstall", ["--purge"]).succeeded)
        // /etc stays: the first install made it, not this one.
        XCTAssertEqual(try tree(), ["/etc"], "--purge removes the kept config too")
    }

    func testNonDefaultPrefixRewritesThePluginDirectoryAndExecStart() throws {
        let result = try runCommand([
            repositoryRoot.appendingPathComponent("tools/install").path, "--prefix", "/opt/sluice",
            "--destdir", destdir, "--bin-dir", productsDirectory.path,
        ])
        XCTAssertTrue(result.succeeded, "\(result)")
        XCTAssertTrue(try contents(Self.config).contains("\ndir = \"/opt/sluice/lib/sluice/plugins\"\n"))
        XCTAssertTrue(try contents("/lib/systemd/system/sluiced.service")
            .contains("\nExecStart=/opt/sluice/bin/sluiced --config /etc/sluice/sluice.toml\n"))
        XCTAssertEqual(try status("/opt/sluice/lib/sluice/plugins/libsluice_generic.so").st_mode & 0o7777, 0o644)

        let wrongPrefix = try tool("uninstall", [])
        XCTAssertFalse(wrongPrefix.succeeded, "no install under /usr")
        XCTAssertTrue(wrongPrefix.stderr.contains("install-manifest"), wrongPrefix.stderr)
        let bad = try runCommand([repositoryRoot.appendingPathComponent("tools/install").path, "--prefix", "relative"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("--prefix 'relative'"), bad.stderr)
    }

    private func isDirectory(_ path: String) -> Bool {
        var directory: ObjCBool = false
        return FileManager.default.fileExists(atPath: destdir + path, isDirectory: &directory) && directory.boolValue
    }

    /// The installed sluiced, with the installed config pointed at a temporary
    /// socket and state directory, the installed plugins and a lab interface.
    func testInstalledDaemonServesWithTheInstalledPlugins() throws {
        try install()
        let lab = try Lab.up(queues: 2, prefix: "sinst")
        self.lab = lab
        let daemon = try installedDaemon(socketGroup: "", interface: lab.appInterface)
        // As systemd would run it: READY=1 comes once the pipeline is up.
        let notify = try NotifySocket(path: "@" + uniqueName("sluice-install-notify"))
        defer { notify.close() }
        try daemon.start(environment: ["NOTIFY_SOCKET": notify.path], executable: destdir + "/usr/bin/sluiced")
        let ready = try notify.waitFor("READY=1")
        XCTAssertTrue(ready.contains("1 pipeline running"), ready)

        let sluicectl = destdir + "/usr/bin/sluicectl"
        let status = try runCommand([sluicectl, "--socket", daemon.socketPath, "status"])
        XCTAssertTrue(status.succeeded, "\(status)\n\(daemon.log())")
        let plugins = try runCommand([sluicectl, "--socket", daemon.socketPath, "--json", "plugins", "list"])
        XCTAssertTrue(plugins.succeeded, "\(plugins)")
        let records = try daemon.call("plugins.list")["result"]?["plugins"]?.arrayValue ?? []
        let loaded = records.filter { $0["status"] == .string("loaded") }.compactMap { $0["path"]?.stringValue }
        XCTAssertEqual(Set(loaded), [
            "\(destdir!)/usr/lib/sluice/plugins/libsluice_generic.so",
            "\(destdir!)/usr/lib/sluice/plugins/libsluice_mlx5.so",
        ], "\(records)")
        XCTAssertTrue(plugins.stdout.contains("libsluice_generic.so"), plugins.stdout)
        try waitUntil("the autostarted pipeline on \(lab.appInterface) to run") {
            let pipeline = try daemon.call("stats.get")["result"]?["pipelines"]?.arrayValue?.first
            return pipeline?["running"] == true
        }
        let explain = try daemon.call("plugins.explain", ["iface": .string(lab.appInterface)])
        XCTAssertEqual(explain["ok"], true, "\(explain)")
    }

    /// A daemon whose config is the installed one pointed at its temporary
    /// socket and state directory and the destdir's plugins, taking `interface`.
    private func installedDaemon(socketGroup: String, interface: String) throws -> DaemonProcess {
        let daemon = try DaemonProcess()
        self.daemon = daemon
        var config = try contents(Self.config)
        for (from, to) in [
            ("state_dir = \"/var/lib/sluice\"", "state_dir = \"\(daemon.stateDirectory)\""),
            ("socket = \"/run/sluice/sluiced.sock\"", "socket = \"\(daemon.socketPath)\""),
            // The group exists only where install created it (not under --destdir).
            ("socket_group = \"sluice\"", "socket_group = \"\(socketGroup)\""),
            ("dir = \"/usr/lib/sluice/plugins\"", "dir = \"\(destdir!)/usr/lib/sluice/plugins\""),
        ] {
            XCTAssertTrue(config.contains(from), "the installed config has \(from)")
            config = config.replacingOccurrences(of: from, with: to)
        }
        // The shipped config autostarts the pipeline of each [[interface]].
        config += "\n[[interface]]\nname = \"\(interface)\"\n"
        try daemon.writeConfig(config)
        return daemon
    }

    /// The unit's capability set is enough: the installed daemon, run by
    /// setpriv with only the unit's CapabilityBoundingSet and its
    /// SupplementaryGroups stand-in, chowns its socket, attaches XDP, binds
    /// AF_XDP sockets and stops cleanly.
    func testInstalledDaemonRunsWithOnlyTheUnitsCapabilities() throws {
        try install()
        let unit = try contents("/lib/systemd/system/sluiced.service")
        let line = try XCTUnwrap(unit.split(separator: "\n").first { $0.hasPrefix("CapabilityBoundingSet=") })
        let capabilities = line.dropFirst("CapabilityBoundingSet=".count).split(separator: " ")
        XCTAssertFalse(capabilities.contains("CAP_SYS_ADMIN"))
        XCTAssertTrue(unit.contains("\nAmbientCapabilities=\(capabilities.joined(separator: " "))\n"))
        XCTAssertTrue(unit.contains("\nSupplementaryGroups=sluice\n"))
        let set = (["-all"] + capabilities.map { "+" + $0.dropFirst(4).lowercased() }).joined(separator: ",")

        // A throw-away group stands in for sluice (which may not exist here).
        let group = String(uniqueName("sg").prefix(30))
        try runCommand(["groupadd", "--system", group], check: true)
        defer { _ = try? runCommand(["groupdel", group]) }
        let gid = try XCTUnwrap(getgrnam(group)?.pointee.gr_gid)

        let lab = try Lab.up(queues: 2, prefix: "scap")
        self.lab = lab
        let daemon = try installedDaemon(socketGroup: group, interface: lab.appInterface)
        try daemon.start(executable: destdir + "/usr/bin/sluiced", launcher: [
            "/usr/bin/setpriv", "--bounding-set", set, "--inh-caps", set, "--ambient-caps", set,
            "--groups", "\(gid)",
        ])
        let pid = try XCTUnwrap(daemon.pid)
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let bounding = try XCTUnwrap(status.split(separator: "\n").first { $0.hasPrefix("CapBnd:") })
        let mask = try XCTUnwrap(UInt64(bounding.split(separator: "\t").last ?? "", radix: 16))
        XCTAssertEqual(mask & (1 << 21), 0, "CAP_SYS_ADMIN is not in the bounding set: \(bounding)")
        XCTAssertEqual(mask.nonzeroBitCount, capabilities.count, "\(bounding)")

        var socketStatus = stat()
        XCTAssertEqual(lstat(daemon.socketPath, &socketStatus), 0)
        XCTAssertEqual(socketStatus.st_gid, gid, "the socket belongs to [control] socket_group")
        try waitUntil("the autostarted pipeline on \(lab.appInterface) to run under the unit's capabilities") {
            let pipeline = try daemon.call("stats.get")["result"]?["pipelines"]?.arrayValue?.first
            return pipeline?["running"] == true
        }
        _ = try daemon.call("shutdown")
        XCTAssertEqual(try daemon.waitForExit(), 0, daemon.log())
        let attached = try runCommand(["ip", "-details", "link", "show", lab.appInterface], check: true)
        XCTAssertFalse(attached.stdout.contains("prog/xdp"), "no XDP program left: \(attached.stdout)")
    }

    /// `systemd-analyze verify` works offline (PID 1 is not systemd here) but
    /// needs ExecStart's binary: the unit is checked as installed, pointed at
    /// the destdir's binary and config.
    func testSystemdAnalyzeVerifiesTheInstalledUnit() throws {
        try install()
        let unit = try contents("/lib/systemd/system/sluiced.service")
        let rewritten = unit.replacingOccurrences(
            of: "ExecStart=/usr/bin/sluiced --config /etc/sluice/sluice.toml",
            with: "ExecStart=\(destdir!)/usr/bin/sluiced --config \(destdir!)/etc/sluice/sluice.toml")
        XCTAssertNotEqual(rewritten, unit)
        let directory = destdir + "/verify"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        let path = directory + "/sluiced.service"
        try rewritten.write(toFile: path, atomically: true, encoding: .utf8)
        let verify = try runCommand(["systemd-analyze", "verify", path])
        XCTAssertTrue(verify.succeeded, "\(verify)")
        XCTAssertEqual(verify.stderr.trimmingCharacters(in: .whitespacesAndNewlines), "", "no warnings: \(verify)")

        // The oracle can fail: the unit as shipped names a binary that is not there.
        try unit.write(toFile: path, atomically: true, encoding: .utf8)
        let missing = try runCommand(["systemd-analyze", "verify", path])
        if !FileManager.default.fileExists(atPath: "/usr/bin/sluiced") {
            XCTAssertFalse(missing.succeeded, "verify accepted a missing ExecStart binary: \(missing)")
        }
    }
}

/// sluiced speaks systemd's NOTIFY_SOCKET protocol to a datagram socket the
/// test binds: READY=1 once it serves, WATCHDOG=1 pings, STOPPING=1 on shutdown.
final class SystemdNotifyTests: XCTestCase {
    private var daemon: DaemonProcess?
    private var socket: NotifySocket?

    override func tearDown() {
        daemon?.stop()
        socket?.close()
    }

    private func runDaemon(notifySocket: String, environment: [String: String] = [:]) throws -> DaemonProcess {
        let daemon = try DaemonProcess()
        self.daemon = daemon
        try daemon.start(environment: ["NOTIFY_SOCKET": notifySocket].merging(environment) { $1 })
        return daemon
    }

    func testReadyThenStoppingOnAPathSocket() throws {
        let socket = try NotifySocket(path: "/tmp/" + uniqueName("sn") + ".notify")
        self.socket = socket
        let daemon = try runDaemon(notifySocket: socket.path)
        let ready = try socket.waitFor("READY=1")
        XCTAssertTrue(ready.contains("STATUS=serving on \(daemon.socketPath), 0 pipelines running"), ready)
        XCTAssertFalse(socket.received.joined().contains("STOPPING=1"))
        XCTAssertFalse(socket.received.joined().contains("WATCHDOG=1"), "no WATCHDOG_USEC, no pings")
        _ = try daemon.call("shutdown")
        let stopping = try socket.waitFor("STOPPING=1")
        XCTAssertTrue(stopping.contains("STATUS=stopping"), stopping)
        XCTAssertEqual(try daemon.waitForExit(), 0, daemon.log())
    }

    func testWatchdogPingsOnAnAbstractSocket() throws {
        let socket = try NotifySocket(path: "@" + uniqueName("sluice-notify"))
        self.socket = socket
        let daemon = try runDaemon(notifySocket: socket.path, environment: ["WATCHDOG_USEC": "200000"])
        _ = try socket.waitFor("READY=1")
        // Pings every 100 ms: several arrive within a few seconds.
        try waitUntil("three WATCHDOG=1 pings", timeout: .seconds(5)) {
            try socket.drain()
            return socket.received.filter { $0 == "WATCHDOG=1" }.count >= 3
        }
        daemon.signal(SIGTERM)
        _ = try socket.waitFor("STOPPING=1")
        XCTAssertEqual(try daemon.waitForExit(), 0, daemon.log())
    }

    func testWatchdogForAnotherProcessIsNotPinged() throws {
        let socket = try NotifySocket(path: "/tmp/" + uniqueName("sn") + ".notify")
        self.socket = socket
        let daemon = try runDaemon(
            notifySocket: socket.path, environment: ["WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"])
        _ = try socket.waitFor("READY=1")
        _ = try daemon.call("status")
        _ = try daemon.call("shutdown")
        _ = try socket.waitFor("STOPPING=1")
        XCTAssertFalse(socket.received.contains("WATCHDOG=1"), "\(socket.received)")
    }

    func testUnusableNotifySocketIsLoggedAndTheDaemonServes() throws {
        let daemon = try runDaemon(notifySocket: "relative/path")
        XCTAssertTrue(daemon.isRunning)
        XCTAssertTrue(daemon.log().contains("neither an absolute path nor an abstract"), daemon.log())
    }
}

/// A Unix datagram socket standing in for systemd's notification socket.
private final class NotifySocket {
    let path: String
    private let descriptor: Int32
    private(set) var received: [String] = []

    init(path: String) throws {
        self.path = path
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw InstallTestError("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 } else { unlink(path) }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + (abstract ? 0 : 1))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) }
        }
        guard bound == 0 else {
            let message = String(cString: strerror(errno))
            Glibc.close(descriptor)
            throw InstallTestError("bind \(path): \(message)")
        }
    }

    /// Reads every datagram waiting, without blocking.
    func drain() throws {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(descriptor, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if count < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK { return }
                throw InstallTestError("recv \(path): \(String(cString: strerror(errno)))")
            }
            received.append(String(decoding: buffer[0..<count], as: UTF8.self))
        }
    }

    /// The first datagram holding `line` as one of its lines.
    func waitFor(_ line: String, timeout: Duration = .seconds(20)) throws -> String {
        try SluiceTestSupport.waitFor("\(line) on \(path)", timeout: timeout) {
            try drain()
            return received.first { $0.split(separator: "\n").contains(Substring(line)) }
        }
    }

    func close() {
        Glibc.close(descriptor)
        if !path.hasPrefix("@") { unlink(path) }
    }
}

private struct InstallTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
