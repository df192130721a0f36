import Foundation
import Logging
import SluiceControl
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// An in-process control server on a socket in a fresh temporary directory,
/// with test commands that reach every error code.
final class ServerHarness {
    let directory: String
    let socketPath: String
    let server: ControlServer
    let registry = CommandRegistry()
    private var task: Task<Void, Error>?

    init(maxClients: Int = 64, idleTimeout: Duration = .seconds(300)) throws {
        var template = Array("/tmp/sluice-ctl-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw XCTSkip("mkdtemp failed")
        }
        directory = String(cString: made)
        socketPath = directory + "/test.sock"
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        server = ControlServer(
            configuration: ControlServerConfiguration(
                socketPath: socketPath, socketMode: 0o600, maxClients: maxClients, idleTimeout: idleTimeout),
            registry: registry, logger: logger)
        registerTestCommands()
        let server = self.server
        task = Task { try await server.run() }
        try waitForSocket()
    }

    func waitForSocket() throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if let client = try? ControlClient(socketPath: socketPath, timeout: .seconds(2)) {
                client.close()
                return
            }
            usleep(10_000)
        }
        throw DeadlineError(what: "control socket \(socketPath)")
    }

    func client() throws -> ControlClient { try ControlClient(socketPath: socketPath, timeout: .seconds(10)) }

    func stop() {
        server.stop()
        task?.cancel()
        rmdirTree()
    }

    private func rmdirTree() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func registerTestCommands() {
        registry.register(CommandSpec("test.echo", level: .read, "echo", arguments: [
            ArgumentSpec("value", .integer, required: true, "a small number"),
            ArgumentSpec("text", .string, "text"),
        ])) { _, arguments in
            let value = try arguments.requiredInteger("value", as: UInt8.self)
            return ["value": JSONValue(value), "text": .string(try arguments.string("text") ?? "")]
        }
        registry.register(CommandSpec("test.mutate", level: .admin, "admin only")) { _, _ in ["done": true] }
        registry.register(CommandSpec("test.fail", level: .read, "throws the code asked for", arguments: [
            ArgumentSpec("code", .string, required: true, "an error code"),
        ])) { _, arguments in
            let code = try arguments.requiredString("code")
            guard let errorCode = ErrorCode(rawValue: code) else { throw ControlError.invalidArgument("no code \(code)") }
            if errorCode == .internal { throw NSError(domain: "test", code: 7) }
            throw ControlError(errorCode, "test.fail asked for \(code)")
        }
        registry.register(CommandSpec("test.slow", level: .read, "takes a moment off the loop")) { _, _ in
            try await Task.sleep(for: .milliseconds(50))
            return ["slow": true]
        }
    }
}

struct DeadlineError: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out waiting for \(what)" }
}

extension JSONValue {
    var errorCode: String? { self["error"]?["code"]?.stringValue }
    var isOK: Bool { self["ok"] == .bool(true) }
}
