import Foundation
import SluiceTestSupport
import XCTest

/// `tools/vmlab`'s faults, as a developer meets them: bad usage, a kernel
/// package Debian does not have, a cache without room, a guest that hangs
/// and a Ctrl-C. Each must end with a clear error and leave the host as it
/// was: no QEMU process, no half-unpacked kernel, no temporary directory.
/// The hang and the Ctrl-C boot a real guest (Debian's 6.1 kernel, cached
/// in .build-vmlab/cache as `tools/vmlab` keeps it).
final class VMLabToolTests: XCTestCase {
    private var temporary: URL!
    private var mountedCache: String?

    override func setUpWithError() throws {
        try XCTSkipIf(ProcessInfo.processInfo.environment["SLUICE_VMLAB_GUEST"] == "1",
                      "inside a tools/vmlab guest: no VM in the VM")
        try Privilege.require("root (tools/vmlab installs packages and boots QEMU)")
        temporary = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("vmlabt"))
        try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let mountedCache { _ = try SluiceTestSupport.run(["umount", "-l", mountedCache]) }
        if let temporary { try? FileManager.default.removeItem(at: temporary) }
    }

    private var tool: String { repositoryRoot.appendingPathComponent("tools/vmlab").path }
    private var results: String { temporary.appendingPathComponent("results").path }

    private func vmlab(_ arguments: [String], environment: [String: String] = [:]) throws -> CommandResult {
        try runCommand([tool] + arguments, environment: environment)
    }

    /// QEMU processes started for this test's results directory (its --rwdir).
    private func guests() throws -> [String] {
        let found = try SluiceTestSupport.run(["pgrep", "-a", "-f", "qemu-system.*\(results)"])
        return found.stdout.split(separator: "\n").map(String.init)
    }

    func testBadUsageExitsTwoNamingTheProblem() throws {
        let cases: [([String], String)] = [
            ([], "no command: run, test or smoke"),
            (["smoke", "LabTests"], "unexpected argument 'LabTests'"),
            (["run"], "run needs a command after '--'"),
            (["run", "--timeout", "soon", "--", "true"], "--timeout wants a whole number of seconds, not 'soon'"),
            (["run", "--kernel", "5.10", "--", "true"], "--kernel wants 6.1, host or a package name"),
            (["test", "--cpus", "0"], "--cpus wants a positive number, not '0'"),
            (["frobnicate"], "unexpected argument 'frobnicate'"),
        ]
        for (arguments, message) in cases {
            let result = try vmlab(arguments)
            XCTAssertEqual(result.status, 2, "\(result)")
            XCTAssertTrue(result.stderr.contains(message), "\(arguments): \(result.stderr)")
        }
    }

    func testAKernelPackageDebianDoesNotHaveIsNamedAndNothingIsLeftInTheCache() throws {
        let cache = temporary.appendingPathComponent("cache").path
        let result = try vmlab(["run", "--kernel", "linux-image-6.1.0-9999-amd64", "--results", results, "--", "true"],
                               environment: ["SLUICE_VMLAB_CACHE": cache])
        XCTAssertEqual(result.status, 1, "\(result)")
        XCTAssertTrue(result.stderr.contains("no Debian package 'linux-image-6.1.0-9999-amd64'"), result.stderr)
        let left = (try? FileManager.default.contentsOfDirectory(atPath: cache)) ?? []
        XCTAssertFalse(left.contains { $0.hasPrefix("linux-image-6.1.0-9999-amd64") }, "left in the cache: \(left)")
    }

    func testACacheWithoutRoomIsRefusedBeforeAnythingIsWritten() throws {
        let cache = temporary.appendingPathComponent("small").path
        try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
        try SluiceTestSupport.run(["mount", "-t", "tmpfs", "-o", "size=4m", "vmlab-test", cache], check: true)
        mountedCache = cache
        // With vng on PATH the venv is not needed and the kernel is what does not fit.
        let result = try vmlab(["run", "--results", results, "--", "true"], environment: ["SLUICE_VMLAB_CACHE": cache])
        XCTAssertEqual(result.status, 1, "\(result)")
        XCTAssertTrue(result.stderr.contains("not enough space for"), result.stderr)
        XCTAssertTrue(result.stderr.contains("\(cache) has"), result.stderr)
        let left = try FileManager.default.contentsOfDirectory(atPath: cache).filter { $0 != ".lock" }
        XCTAssertEqual(left, [], "the refused run left files behind")
    }

    /// The timeout holds whether the guest hangs in its command or while
    /// booting (under TCG on a busy host it may still be booting at 20 s):
    /// the same kill of QEMU's process group either way.
    func testAGuestThatHangsIsStoppedAtTheTimeoutWithTheConsolesTail() throws {
        let result = try vmlab(["run", "--timeout", "20", "--results", results, "--", "sleep", "600"])
        XCTAssertEqual(result.status, 124, "\(result)")
        XCTAssertTrue(result.stderr.contains("the guest did not finish within 20s (SLUICE_VMLAB_TIMEOUT); last console lines"),
                      result.stderr)
        // The tail printed is the console's (QEMU may add a line or two after it, as it dies).
        let console = try String(contentsOfFile: results + "/console.log", encoding: .utf8)
        let tail = result.stderr.components(separatedBy: "last console lines").last?
            .split(separator: "\n").dropFirst().filter { !$0.hasPrefix("vmlab: ") } ?? []
        XCTAssertFalse(tail.isEmpty, "no console lines after the error: \(result.stderr)")
        XCTAssertTrue(tail.allSatisfy { console.contains($0) }, "printed lines that are not the console's: \(tail)")
        XCTAssertEqual(try guests(), [], "QEMU still running after the timeout")
    }

    func testCtrlCStopsTheGuestAndCleansUp() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = ["run", "--results", results, "--", "sh", "-c", "echo guest-is-up; exec sleep 600"]
        let errors = temporary.appendingPathComponent("stderr")
        XCTAssertTrue(FileManager.default.createFile(atPath: errors.path, contents: nil))
        process.standardError = try FileHandle(forWritingTo: errors)
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { process.terminate() } }
        try waitUntil("the guest ran its command", timeout: .seconds(240), every: .milliseconds(250)) {
            let console = (try? String(contentsOfFile: results + "/console.log", encoding: .utf8)) ?? ""
            return console.contains("guest-is-up") || !process.isRunning
        }
        let early = (try? String(contentsOf: errors, encoding: .utf8)) ?? ""
        XCTAssertTrue(process.isRunning, "tools/vmlab ended before the guest ran: \(early)")
        kill(process.processIdentifier, SIGINT)
        try waitUntil("tools/vmlab to exit after SIGINT", timeout: .seconds(30)) { !process.isRunning }
        XCTAssertEqual(process.terminationStatus, 130)
        XCTAssertTrue(try String(contentsOf: errors, encoding: .utf8).contains("interrupted"))
        XCTAssertEqual(try guests(), [], "QEMU still running after Ctrl-C")
    }
}
