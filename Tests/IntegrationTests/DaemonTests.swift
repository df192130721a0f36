import Foundation
import SluiceControl
import SluiceTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The real `sluiced` binary: start, answer, reload, stop.
final class DaemonTests: XCTestCase {
    var daemon: DaemonProcess!

    override func setUpWithError() throws {
        daemon = try DaemonProcess()
    }

    override func tearDown() {
        daemon?.stop()
    }

    func testStartsAnswersAndStopsGracefullyOnSIGTERM() throws {
        try daemon.start()
        let status = try daemon.call("status")
        XCTAssertEqual(status["ok"], true)
        XCTAssertEqual(status["result"]?["pid"], JSONValue(try XCTUnwrap(daemon.pid)))
        XCTAssertEqual(status["result"]?["socket"], .string(daemon.socketPath))
        XCTAssertEqual(status["result"]?["config_file"], .string(daemon.configPath))
        var info = stat()
        XCTAssertEqual(lstat(daemon.socketPath, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o660, "socket mode from config")
        daemon.signal(SIGTERM)
        XCTAssertEqual(try daemon.waitForExit(), 0)
        XCTAssertNotEqual(lstat(daemon.socketPath, &info), 0, "socket file removed on stop")
    }

    /// Every optional kernel feature is named at start with its state (and,
    /// unless found, what Sluice does without it), and `doctor` — JSON and
    /// sluicectl's text — says the same. States come from this kernel.
    func testStartLogAndDoctorNameEveryKernelFeature() throws {
        let names = ["xdp_live_frames", "xdp_multi_buffer", "xdp_feature_flags", "xdp_rx_metadata",
                     "bpf_link_xdp", "xsk_need_wakeup", "xsk_multi_buffer", "busy_poll"]
        try daemon.start()
        let reply = try daemon.call("doctor", ["sample_ms": 0])
        XCTAssertEqual(reply["ok"], true, reply.serialized())
        let features = reply["result"]?["kernel_features"]?.arrayValue ?? []
        XCTAssertEqual(features.compactMap { $0["name"]?.stringValue }, names, reply.serialized())
        let log = daemon.log().split(separator: "\n")
        for feature in features {
            let name = feature["name"]?.stringValue ?? "?"
            let state = feature["state"]?.stringValue ?? "?"
            let without = feature["without"]?.stringValue ?? ""
            XCTAssertTrue(["found", "missing", "unknown"].contains(state), feature.serialized())
            XCTAssertFalse(without.isEmpty, feature.serialized())
            XCTAssertFalse((feature["detail"]?.stringValue ?? "").isEmpty, feature.serialized())
            let lines = log.filter { $0.contains("kernel feature \(name): ") }
            XCTAssertEqual(lines.count, 1, "one start line for \(name):\n\(daemon.log())")
            let line = String(lines.first ?? "")
            XCTAssertTrue(line.contains("kernel feature \(name): \(state) ("), line)
            XCTAssertTrue(line.contains(" \(state == "found" ? "info" : name == "bpf_link_xdp" ? "warning" : "notice") "), line)
            if state != "found" { XCTAssertTrue(line.hasSuffix(without), line) }
        }
        let text = try runCommand([DaemonProcess.sluicectlPath, "--socket", daemon.socketPath, "doctor", "--sample", "0"])
        XCTAssertEqual(text.status, 0, text.description)
        XCTAssertTrue(text.stdout.contains("\nkernel features:\n"), text.stdout)
        for feature in features {
            let name = feature["name"]?.stringValue ?? "?", state = feature["state"]?.stringValue ?? "?"
            XCTAssertTrue(text.stdout.contains("  \(state.padding(toLength: 8, withPad: " ", startingAt: 0)) \(name): "), text.stdout)
            if state != "found" { XCTAssertTrue(text.stdout.contains(feature["without"]?.stringValue ?? "?"), text.stdout) }
        }
    }

    func testShutdownCommandFromSluicectl() throws {
        try daemon.start()
        let result = try runCommand([DaemonProcess.sluicectlPath, "--socket", daemon.socketPath, "shutdown"])
        XCTAssertEqual(result.status, 0, result.description)
        XCTAssertTrue(result.stdout.contains("stopping"))
        XCTAssertEqual(try daemon.waitForExit(), 0)
        XCTAssertTrue(daemon.log().contains("shutdown requested"))
    }

    func testBrokenConfigOnSIGHUPIsRejectedAndOldConfigStays() throws {
        try daemon.start()
        let original = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        try daemon.writeConfig(original + "\n[control]\nmax_clients = 0\n")
        daemon.signal(SIGHUP)
        try waitUntil("the rejected reload in the log") { self.daemon.log().contains("config reload rejected") }
        XCTAssertTrue(daemon.isRunning)
        XCTAssertEqual(try daemon.call("status")["ok"], true)
        // The same through the control socket: the reply says why.
        try daemon.writeConfig(original.replacingOccurrences(of: "log_level = \"debug\"", with: "log_level = \"chatty\""))
        let rejected = try daemon.call("config.reload")
        XCTAssertEqual(rejected["error"]?["code"], "invalid_argument")
        let message = try XCTUnwrap(rejected["error"]?["message"]?.stringValue)
        XCTAssertTrue(message.contains("\(daemon.configPath):3"), message)
        XCTAssertTrue(message.contains("daemon.log_level"), message)
        // A good change is taken and reported.
        try daemon.writeConfig(original.replacingOccurrences(of: "log_level = \"debug\"", with: "log_level = \"info\""))
        let accepted = try daemon.call("config.reload")
        XCTAssertEqual(accepted["ok"], true, accepted.serialized())
        XCTAssertEqual(accepted["result"]?["changed"], ["daemon.log_level"])
    }

    func testCheckValidatesWithoutStarting() throws {
        let good = try runCommand([DaemonProcess.sluicedPath, "--check", "--config", daemon.configPath])
        XCTAssertEqual(good.status, 0, good.description)
        try daemon.writeConfig("[control]\nmax_clients = 99999\nbogus = 1\n")
        let bad = try runCommand([DaemonProcess.sluicedPath, "--check", "--config", daemon.configPath])
        XCTAssertEqual(bad.status, 78, bad.description)
        XCTAssertTrue(bad.stderr.contains("\(daemon.configPath):2"), bad.stderr)
        XCTAssertTrue(bad.stderr.contains("control.max_clients"), bad.stderr)
        XCTAssertTrue(bad.stderr.contains("\(daemon.configPath):3"), bad.stderr)
        XCTAssertTrue(bad.stderr.contains("bogus"), bad.stderr)
        var info = stat()
        XCTAssertNotEqual(lstat(daemon.socketPath, &info), 0, "--check must not bind the socket")
    }

    /// On a fresh machine neither the state directory nor the socket's
    /// exists, nor their parents: sluiced makes every missing level, the
    /// state's 0750 and the socket's 0755 (what systemd's StateDirectory= and
    /// RuntimeDirectory= make in production), owned by its own user, and starts.
    func testMissingStateAndSocketDirectoriesAreMadeWithTheirModes() throws {
        daemon.stop()
        daemon = try DaemonProcess(socketSubpath: "run/sluice/sluiced.sock", stateSubpath: "var/lib/sluice")
        try daemon.start()
        XCTAssertEqual(try daemon.call("status")["ok"], true)
        let made = [("run", "755"), ("run/sluice", "755"), ("var", "750"), ("var/lib", "750"), ("var/lib/sluice", "750")]
        for (path, mode) in made.map({ (daemon.directory + "/" + $0.0, $0.1) }) {
            var info = stat()
            XCTAssertEqual(stat(path, &info), 0, "\(path) was not made")
            XCTAssertEqual(info.st_mode & S_IFMT, S_IFDIR, path)
            XCTAssertEqual(String(info.st_mode & 0o7777, radix: 8), mode, path)
            XCTAssertEqual(info.st_uid, geteuid(), path)
        }
    }

    /// Every key naming a directory Sluice writes into (the state directory,
    /// the control socket's, a pcap module's capture directory): one that can
    /// never be made is refused by `sluiced --check`, naming the key, the path
    /// and the fix.
    func testCheckRefusesEveryOutputDirectoryThatCannotBeMade() throws {
        let file = daemon.directory + "/not-a-directory"
        try "".write(toFile: file, atomically: true, encoding: .utf8)
        try daemon.writeConfig("""
            [daemon]
            state_dir = "\(file)/state"
            [control]
            socket = "\(file)/run/sluiced.sock"
            socket_group = ""
            [[pipeline.modules]]
            kind = "pcap"
            path = "\(file)/captures/capture.pcap"
            """)
        let check = try runCommand([DaemonProcess.sluicedPath, "--check", "--config", daemon.configPath])
        XCTAssertEqual(check.status, 78, check.description)
        let fix = "create it or choose a path on a writable file system"
        for (key, path) in [("daemon.state_dir", "state"), ("control.socket", "run"), ("pipeline.modules[0].path", "captures")] {
            let line = check.stderr.split(separator: "\n").first { $0.contains(key + ":") }
            XCTAssertNotNil(line, "\(key) not named:\n\(check.stderr)")
            XCTAssertTrue(line?.contains("'\(file)/\(path)' cannot be made: '\(file)' is not a directory; \(fix)") == true,
                          "\(key): \(line ?? "")")
        }
    }

    func testSecondDaemonDoesNotStealALiveSocket() throws {
        try daemon.start()
        let second = try runCommand([DaemonProcess.sluicedPath, "--config", daemon.configPath])
        XCTAssertNotEqual(second.status, 0)
        XCTAssertTrue(second.stderr.contains("already listening"), second.stderr)
        XCTAssertEqual(try daemon.call("status")["ok"], true, "the first daemon keeps its socket")
    }

    func testStaleSocketFromACrashIsReplaced() throws {
        // A bound socket file with nobody listening, as a kill -9 leaves it.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(daemon.socketPath.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0)
        close(fd)
        try daemon.start()
        XCTAssertEqual(try daemon.call("status")["ok"], true)
    }

    func testSluicectlExitCodes() throws {
        let ctl = DaemonProcess.sluicectlPath
        let unreachable = try runCommand([ctl, "--socket", daemon.socketPath, "status"])
        XCTAssertEqual(unreachable.status, 3, unreachable.description)
        XCTAssertTrue(unreachable.stderr.contains(daemon.socketPath), unreachable.stderr)
        XCTAssertTrue(unreachable.stderr.contains("does not exist"), unreachable.stderr)
        XCTAssertEqual(try runCommand([ctl, "--no-such-flag"]).status, 2)
        try daemon.start()
        let status = try runCommand([ctl, "--socket", daemon.socketPath, "status"])
        XCTAssertEqual(status.status, 0, status.description)
        XCTAssertTrue(status.stdout.contains("pid:"), status.stdout)
        let failed = try runCommand([ctl, "--socket", daemon.socketPath, "call", "no.such"])
        XCTAssertEqual(failed.status, 1)
        XCTAssertTrue(failed.stderr.contains("unknown_command"), failed.stderr)
        let badArgs = try runCommand([ctl, "--socket", daemon.socketPath, "call", "status", "--args", "[1]"])
        XCTAssertEqual(badArgs.status, 2)
        let json = try runCommand([ctl, "--socket", daemon.socketPath, "--json", "help"])
        XCTAssertEqual(json.status, 0)
        let reply = try JSONValue.parse(Array(json.stdout.utf8))
        let names = reply["result"]?["commands"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
        XCTAssertTrue(Set(["status", "shutdown", "config.reload", "stats.get", "stats.subscribe", "help"])
            .isSubset(of: Set(names)), "\(names)")
        let watch = try runCommand([ctl, "--socket", daemon.socketPath, "stats", "--watch", "--interval", "100", "--count", "2"])
        XCTAssertEqual(watch.status, 0, watch.description)
        XCTAssertEqual(watch.stdout.components(separatedBy: "uptime ").count - 1, 2, watch.stdout)
    }
}
