import SluiceSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Why a client could not talk to the daemon, phrased for an operator.
public enum ControlClientError: Error, CustomStringConvertible, Equatable {
    case cannotConnect(path: String, errno: Errno)
    case closed(path: String)
    case timedOut(path: String)
    case malformedReply(String)
    case io(SystemCallError)

    public var description: String {
        switch self {
        case .cannotConnect(let path, let errno):
            switch errno {
            case .noSuchFileOrDirectory:
                return "cannot reach sluiced: \(path) does not exist (is the daemon running? is --socket right?)"
            case .permissionDenied:
                return "cannot reach sluiced: permission denied on \(path) (join the socket's group, or use sudo)"
            case .connectionRefused:
                return "cannot reach sluiced: \(path) exists but nobody is listening (stale socket from a stopped daemon?)"
            default:
                return "cannot reach sluiced at \(path): \(errno)"
            }
        case .closed(let path): return "sluiced closed the connection on \(path)"
        case .timedOut(let path): return "sluiced did not answer on \(path) in time"
        case .malformedReply(let line): return "sluiced sent a line that is not JSON: \(line.prefix(200))"
        case .io(let error): return "control socket I/O failed: \(error)"
        }
    }
}

/// A small blocking client of protocol v1 (for `sluicectl` and tests).
public final class ControlClient {
    public let socketPath: String
    /// The server's first line: version, protocol, pid and our level.
    public private(set) var greeting: JSONValue = .null
    private let fd: Int32
    private var buffer: [UInt8] = []
    private var nextID: Int64 = 1
    private var closed = false
    /// Replies longer than this are refused rather than buffered forever.
    public var maxReplyBytes = 64 << 20

    public init(socketPath: String, timeout: Duration? = .seconds(30)) throws {
        self.socketPath = socketPath
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ControlClientError.cannotConnect(path: socketPath, errno: currentErrno) }
        self.fd = fd
        if let timeout {
            var tv = timeval(tv_sec: Int(timeout.components.seconds),
                             tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(socketPath.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            Glibc.close(fd)
            throw ControlClientError.cannotConnect(path: socketPath, errno: .fileNameTooLong)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if connected != 0 {
            let error = currentErrno
            Glibc.close(fd)
            throw ControlClientError.cannotConnect(path: socketPath, errno: error)
        }
        do {
            guard let line = try readLine() else { throw ControlClientError.closed(path: socketPath) }
            greeting = try Self.decode(line)
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    public func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }

    /// Sends a request and returns the reply object (`ok`, `result`/`error`).
    /// Event lines that arrive meanwhile are passed to `onEvent`.
    public func call(
        _ command: String, arguments: [String: JSONValue] = [:],
        onEvent: ((JSONValue) -> Void)? = nil
    ) throws -> JSONValue {
        let id = JSONValue.int(nextID)
        nextID += 1
        var request: [String: JSONValue] = ["id": id, "cmd": .string(command)]
        if !arguments.isEmpty { request["args"] = .object(arguments) }
        try send(line: JSONValue.object(request).serialized())
        while true {
            guard let line = try readLine() else { throw ControlClientError.closed(path: socketPath) }
            let message = try Self.decode(line)
            if message["event"] != nil, message["ok"] == nil {
                onEvent?(message)
                continue
            }
            return message
        }
    }

    /// Sends `method`'s typed request; returns the reply object as ``call(_:arguments:onEvent:)`` does.
    public func call<Method: ControlMethod>(_ method: Method.Type, _ request: Method.Request) throws -> JSONValue {
        try call(Method.name, arguments: try JSONValue(encoding: request).objectValue ?? [:])
    }

    /// Writes raw bytes followed by a newline (tests send malformed lines).
    public func send(line: String) throws {
        try send(bytes: Array(line.utf8) + [0x0A])
    }

    public func send(bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = try bytes.withUnsafeBytes { raw in
                try retryingEINTR("write(\(socketPath))") {
                    Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                }
            }
            offset += written
        }
    }

    /// The next line from the server, without its newline; nil at EOF.
    public func readLine() throws -> String? {
        var scanned = 0
        while true {
            if let newline = buffer[scanned...].firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            scanned = buffer.count
            guard buffer.count < maxReplyBytes else {
                throw ControlClientError.malformedReply("reply longer than \(maxReplyBytes) bytes")
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count: Int
            do {
                count = try chunk.withUnsafeMutableBytes { raw in
                    try retryingEINTR("read(\(socketPath))") { recv(fd, raw.baseAddress, raw.count, 0) }
                }
            } catch let error as SystemCallError where error.errno == .resourceTemporarilyUnavailable {
                throw ControlClientError.timedOut(path: socketPath)
            } catch let error as SystemCallError {
                if error.errno == .connectionReset { return nil }
                throw ControlClientError.io(error)
            }
            if count == 0 { return nil }
            buffer.append(contentsOf: chunk[..<count])
        }
    }

    private static func decode(_ line: String) throws -> JSONValue {
        do {
            return try JSONValue.parse(Array(line.utf8))
        } catch {
            throw ControlClientError.malformedReply(line)
        }
    }
}
