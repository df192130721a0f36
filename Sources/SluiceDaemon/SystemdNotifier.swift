import Foundation
import Logging
import SluiceSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The sender side of systemd's `NOTIFY_SOCKET` protocol (what `sd_notify(3)`
/// does), without a libsystemd dependency: one datagram per message on a
/// non-blocking Unix datagram socket, so a stalled or absent manager never
/// blocks the daemon.
public final class SystemdNotifier: Sendable {
    /// Where the datagrams go: a path, or an abstract name (`@name` in the
    /// environment, a leading NUL on the wire).
    public let destination: String
    /// Half of `WATCHDOG_USEC` when the watchdog is on for this process:
    /// systemd's advice is to ping at least twice per period.
    public let watchdogInterval: Duration?
    private let descriptor: Int32
    private let address: sockaddr_un
    private let addressLength: socklen_t

    /// `nil` when `NOTIFY_SOCKET` is unset or empty (not started by systemd
    /// as Type=notify). Throws when it is set but cannot be used.
    public static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> SystemdNotifier? {
        guard let socket = environment["NOTIFY_SOCKET"], !socket.isEmpty else { return nil }
        let interval = try watchdogInterval(environment)
        return try SystemdNotifier(destination: socket, watchdogInterval: interval)
    }

    /// `WATCHDOG_USEC` applies only when `WATCHDOG_PID` is absent or names
    /// this process (a forked child must not ping for its parent).
    static func watchdogInterval(_ environment: [String: String]) throws -> Duration? {
        guard let text = environment["WATCHDOG_USEC"], !text.isEmpty else { return nil }
        if let pidText = environment["WATCHDOG_PID"], !pidText.isEmpty {
            guard let pid = Int32(pidText) else {
                throw SystemdNotifierError(description: "WATCHDOG_PID '\(pidText)' is not a process id")
            }
            guard pid == getpid() else { return nil }
        }
        // Bounded so the Duration arithmetic cannot overflow: a day is plenty.
        guard let microseconds = UInt64(text), microseconds > 0, microseconds <= 86_400_000_000 else {
            throw SystemdNotifierError(
                description: "WATCHDOG_USEC '\(text)' is not a number of microseconds from 1 to 86400000000")
        }
        return .microseconds(Int64(microseconds / 2))
    }

    public init(destination: String, watchdogInterval: Duration? = nil) throws {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(destination.utf8)
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract {
            bytes[0] = 0
        } else if bytes.first != UInt8(ascii: "/") {
            throw SystemdNotifierError(
                description: "NOTIFY_SOCKET '\(destination)' is neither an absolute path nor an abstract '@name'")
        }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        // A path needs its terminating NUL; an abstract name is length-delimited.
        guard bytes.count < capacity || (abstract && bytes.count <= capacity) else {
            throw SystemdNotifierError(
                description: "NOTIFY_SOCKET '\(destination)' is \(bytes.count) bytes; sun_path holds \(capacity - 1)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { path in
            path.copyBytes(from: bytes)
        }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)!
        self.addressLength = socklen_t(pathOffset + bytes.count + (abstract ? 0 : 1))
        self.address = address
        self.destination = destination
        self.watchdogInterval = watchdogInterval
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
            | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard descriptor >= 0 else {
            throw SystemdNotifierError(description: "socket(AF_UNIX, SOCK_DGRAM) for NOTIFY_SOCKET: \(currentErrno)")
        }
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    /// Sends newline-separated `KEY=VALUE` assignments as one datagram.
    /// Throws the errno of a failed send (EAGAIN when the manager is behind).
    public func send(_ assignments: String...) throws {
        let message = Array(assignments.joined(separator: "\n").utf8)
        var address = self.address
        let destination = self.destination, descriptor = self.descriptor, length = addressLength
        _ = try withUnsafePointer(to: &address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                try retryingEINTR("sendto(NOTIFY_SOCKET \(destination))") {
                    sendto(descriptor, message, message.count, Int32(MSG_NOSIGNAL), socketAddress, length)
                }
            }
        }
    }

    /// Notifications are advisory: a failure is logged, never fatal.
    func notify(_ assignments: String..., logger: Logger) {
        let message = assignments.joined(separator: "\n")
        do {
            try send(message)
        } catch {
            logger.warning("systemd notification not sent", metadata: ["message": "\(message)", "error": "\(error)"])
        }
    }

    /// Pings `WATCHDOG=1` every ``watchdogInterval`` until cancelled; returns
    /// at once when the watchdog is off.
    func runWatchdog(logger: Logger) async {
        guard let interval = watchdogInterval else { return }
        while !Task.isCancelled {
            notify("WATCHDOG=1", logger: logger)
            do {
                try await Task.sleep(for: interval)
            } catch {
                return
            }
        }
    }
}

public struct SystemdNotifierError: Error, CustomStringConvertible {
    public var description: String
}
