import Foundation
import SluiceControl
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A real `sluiced` started from the build products with a config written
/// into its own temporary directory; stopped (and the directory removed) by
/// ``stop()``, which tests call from tearDown or defer.
public final class DaemonProcess {
    public let directory: String
    public let configPath: String
    public let socketPath: String
    public let stateDirectory: String
    public let logPath: String
    public private(set) var process: Process?

    /// `extraConfig` is appended verbatim (more tables); `control` lines go
    /// into the [control] table. The socket and the state directory are at
    /// `socketSubpath` and `stateSubpath` in the test's directory.
    public init(
        control: [String] = [], extraConfig: String = "", directoryMode: mode_t = 0o755,
        socketSubpath: String = "sluiced.sock", stateSubpath: String = "state"
    ) throws {
        var template = Array("/tmp/sluiced-test-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw DaemonProcessError(description: "mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        directory = String(cString: made)
        chmod(directory, directoryMode)
        configPath = directory + "/sluice.toml"
        socketPath = directory + "/" + socketSubpath
        stateDirectory = directory + "/" + stateSubpath
        logPath = directory + "/sluiced.log"
        // Run as root, the test is admin by uid; otherwise by its own group,
        // so that shutdown and reload work in unprivileged runs too.
        let adminGroup = geteuid() == 0 ? "" : (getgrgid(getegid()).map { String(cString: $0.pointee.gr_name) } ?? "")
        var controlLines = ["socket = \"\(socketPath)\"", "socket_group = \"\"", "admin_group = \"\(adminGroup)\""]
        for line in control {
            let key = line.split(separator: "=").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            controlLines.removeAll { $0.hasPrefix(key + " ") }
            controlLines.append(line)
        }
        try writeConfig("""
            [daemon]
            state_dir = "\(stateDirectory)"
            log_level = "debug"

            [control]
            \(controlLines.joined(separator: "\n"))

            \(extraConfig)
            """)
    }

    public func writeConfig(_ text: String) throws {
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    public static var sluicedPath: String { productsDirectory.appendingPathComponent("sluiced").path }
    public static var sluicectlPath: String { productsDirectory.appendingPathComponent("sluicectl").path }

    /// Starts the daemon and waits (with a deadline) until it answers.
    /// `environment` entries are added to (or replace) the test's own;
    /// `executable` runs another sluiced (an installed one) instead of the built one;
    /// `launcher` (absolute path first) runs it through a program that execs
    /// it, such as `setpriv`, keeping the process id.
    public func start(
        arguments: [String] = [], timeout: Duration = .seconds(20),
        environment: [String: String] = [:], executable: String? = nil, launcher: [String] = []
    ) throws {
        let process = Process()
        let sluiced = executable ?? Self.sluicedPath
        let argv = launcher + [sluiced, "--config", configPath] + arguments
        process.executableURL = URL(fileURLWithPath: argv[0])
        process.arguments = Array(argv.dropFirst())
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let logHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        logHandle.seekToEndOfFile()
        process.standardOutput = logHandle
        process.standardError = logHandle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        self.process = process
        try waitUntil("sluiced to answer on \(socketPath)", timeout: timeout) {
            guard process.isRunning else {
                throw DaemonProcessError(description: "sluiced exited \(process.terminationStatus):\n\(self.log())")
            }
            guard let client = try? ControlClient(socketPath: socketPath, timeout: .seconds(2)) else { return false }
            client.close()
            return true
        }
    }

    public var pid: Int32? { process?.processIdentifier }
    public var isRunning: Bool { process?.isRunning ?? false }

    public func client() throws -> ControlClient { try ControlClient(socketPath: socketPath, timeout: .seconds(20)) }

    /// One command's reply object.
    public func call(_ command: String, _ arguments: [String: JSONValue] = [:]) throws -> JSONValue {
        let client = try client()
        defer { client.close() }
        return try client.call(command, arguments: arguments)
    }

    public func signal(_ number: Int32) {
        if let pid, isRunning { kill(pid, number) }
    }

    /// Waits for the process to exit and returns its status.
    @discardableResult
    public func waitForExit(timeout: Duration = .seconds(20)) throws -> Int32 {
        guard let process else { return -1 }
        do {
            try waitUntil("sluiced (pid \(process.processIdentifier)) to exit", timeout: timeout) { !process.isRunning }
        } catch let error as DeadlineExceeded {
            // What it was doing when it did not go: the last lines of its log.
            let tail = log().split(separator: "\n", omittingEmptySubsequences: false).suffix(15).joined(separator: "\n")
            throw DaemonProcessError(description: "\(error); the end of its log:\n\(tail)")
        }
        return process.terminationStatus
    }

    public func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Runs `body`; when it throws (a wait that timed out), the test fails
    /// with the daemon's log first, since the reason is usually there.
    public func showingLogOnFailure<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch {
            XCTFail(log())
            throw error
        }
    }

    /// SIGTERM, then SIGKILL if it does not go; removes the directory.
    public func stop(keepDirectory: Bool = false) {
        if let process, process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            if (try? waitForExit(timeout: .seconds(15))) == nil {
                kill(process.processIdentifier, SIGKILL)
                // Bounded: a daemon stuck in the kernel (D state) must fail
                // this test, not hang the whole suite in waitUntilExit().
                if (try? waitForExit(timeout: .seconds(30))) == nil {
                    print("sluiced (pid \(process.processIdentifier)) did not exit after SIGKILL; its log:\n\(log())")
                }
            }
        }
        if !keepDirectory { try? FileManager.default.removeItem(atPath: directory) }
    }
}

public struct DaemonProcessError: Error, CustomStringConvertible {
    public var description: String
}
