@_exported import SluiceProtocol

/// Control socket protocol, version 1: newline-delimited JSON over a UNIX
/// stream socket. See README "Control socket protocol".
public enum ControlProtocol {
    public static let version = 1
    /// The daemon's release, sent in the greeting.
    public static let sluiceVersion = "0.1.0"
    /// A request line longer than this closes the connection.
    public static let maxLineBytes = 64 * 1024
    public static let defaultSocketPath = "/run/sluice/sluiced.sock"
}

/// The error codes of protocol v1; the raw values go on the wire.
public enum ErrorCode: String, Codable, Sendable, CaseIterable {
    case badRequest = "bad_request"
    case unknownCommand = "unknown_command"
    case invalidArgument = "invalid_argument"
    case notFound = "not_found"
    case unsupported
    case permissionDenied = "permission_denied"
    case busy
    case `internal`
}

/// An error a command reports to the client.
public struct ControlError: Error, Equatable, Sendable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String

    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }

    public static func badRequest(_ message: String) -> ControlError { .init(.badRequest, message) }
    public static func invalidArgument(_ message: String) -> ControlError { .init(.invalidArgument, message) }
    public static func notFound(_ message: String) -> ControlError { .init(.notFound, message) }
    public static func unsupported(_ message: String) -> ControlError { .init(.unsupported, message) }
    public static func busy(_ message: String) -> ControlError { .init(.busy, message) }
    public static func `internal`(_ message: String) -> ControlError { .init(.internal, message) }
}

/// A parsed request line.
public struct ControlRequest: Sendable {
    /// Echoed in the reply: a string, an integer, or null when the client sent none.
    public var id: JSONValue
    public var command: String
    public var arguments: [String: JSONValue]

    /// Parses one request line. Errors carry whatever id could be recovered
    /// so that the client can still match the error reply.
    public static func parse(line: some Collection<UInt8>) -> Result<ControlRequest, RequestError> {
        let document: JSONValue
        do {
            document = try JSONValue.parse(line)
        } catch {
            return .failure(RequestError(id: .null, error: .badRequest("the line is not valid JSON")))
        }
        guard case .object(let object) = document else {
            return .failure(RequestError(
                id: .null, error: .badRequest("a request must be a JSON object, got \(document.typeName)")))
        }
        let id = object["id"] ?? .null
        switch id {
        case .null, .string, .int, .uint: break
        default:
            return .failure(RequestError(
                id: .null, error: .badRequest("\"id\" must be a string or an integer, got \(id.typeName)")))
        }
        guard let cmdValue = object["cmd"] else {
            return .failure(RequestError(id: id, error: .badRequest("missing \"cmd\"")))
        }
        guard case .string(let command) = cmdValue else {
            return .failure(RequestError(
                id: id, error: .badRequest("\"cmd\" must be a string, got \(cmdValue.typeName)")))
        }
        var arguments: [String: JSONValue] = [:]
        switch object["args"] {
        case nil, .null?: break
        case .object(let args)?: arguments = args
        case let other?:
            return .failure(RequestError(
                id: id, error: .badRequest("\"args\" must be an object, got \(other.typeName)")))
        }
        for key in object.keys where !["id", "cmd", "args"].contains(key) {
            return .failure(RequestError(
                id: id, error: .badRequest("unknown request field \"\(key)\" (expected id, cmd, args)")))
        }
        return .success(ControlRequest(id: id, command: command, arguments: arguments))
    }
}

public struct RequestError: Error, Sendable {
    public var id: JSONValue
    public var error: ControlError
}

/// Builders for the lines the server sends.
public enum ControlMessage {
    public static func greeting(pid: Int32, level: AccessLevel) -> JSONValue {
        [
            "sluice": .string(ControlProtocol.sluiceVersion),
            "protocol": .int(Int64(ControlProtocol.version)),
            "pid": .int(Int64(pid)),
            "level": .string(level.rawValue),
        ]
    }

    public static func success(id: JSONValue, result: JSONValue) -> JSONValue {
        ["id": id, "ok": true, "result": result]
    }

    public static func failure(id: JSONValue, error: ControlError) -> JSONValue {
        [
            "id": id, "ok": false,
            "error": ["code": .string(error.code.rawValue), "message": .string(error.message)],
        ]
    }

    public static func event(id: JSONValue, name: String, data: JSONValue) -> JSONValue {
        ["id": id, "event": .string(name), "data": data]
    }
}
