import Foundation
import Synchronization

/// What a handler knows about the request it serves.
public struct CommandContext: Sendable {
    public var peer: PeerIdentity
    public var requestID: JSONValue
    /// The connection the request came on, for streams (`*.subscribe`).
    public var session: ControlSession
}

public typealias CommandHandler = @Sendable (CommandContext, Arguments) async throws -> JSONValue

public struct Command: Sendable {
    public var spec: CommandSpec
    public var handler: CommandHandler
}

/// Every command the daemon serves. `help` is generated from it, so what
/// `help` lists is exactly what is registered.
public final class CommandRegistry: Sendable {
    // Written while the daemon wires itself up, before the server starts;
    // the lock makes late registration safe all the same.
    private let lock = Mutex<[String: Command]>([:])

    public init() {}

    public func register(_ spec: CommandSpec, _ handler: @escaping CommandHandler) {
        precondition(spec.name.split(separator: ".").count <= 2, "command names are noun.verb")
        lock.withLock { $0[spec.name] = Command(spec: spec, handler: handler) }
    }

    /// Registers `method` with a typed handler: the request's arguments are
    /// checked against the method's declared arguments, then decoded into
    /// its `Request`; the handler's `Response` is the reply's `result`.
    public func register<Method: ControlMethod>(
        _ method: Method.Type,
        _ handler: @escaping @Sendable (Method.Request, CommandContext) async throws -> Method.Response
    ) {
        register(Method.spec) { context, arguments in
            try JSONValue(encoding: try await handler(try arguments.decode(Method.Request.self), context))
        }
    }

    /// Registers `method` with a handler that answers with a reply encoded
    /// beforehand, for one value served to many requests (`stats.get`).
    public func register<Method: ControlMethod>(
        _ method: Method.Type,
        encoded handler: @escaping @Sendable (Method.Request, CommandContext) async throws -> Encoded<Method.Response>
    ) {
        register(Method.spec) { context, arguments in
            try await handler(try arguments.decode(Method.Request.self), context).json
        }
    }

    public func command(named name: String) -> Command? {
        lock.withLock { $0[name] }
    }

    /// All commands, sorted by name.
    public var commands: [Command] {
        lock.withLock { $0.values.sorted { $0.spec.name < $1.spec.name } }
    }
}

/// A reply already encoded, and encoded from a `Response`: nothing else builds one.
public struct Encoded<Response: Encodable>: Sendable {
    public let json: JSONValue
    public init(_ response: Response) throws { json = try JSONValue(encoding: response) }
}

/// A request's arguments with typed, range-checked accessors: a value that
/// is missing, of the wrong type or out of range is `invalid_argument`,
/// never a trap.
public struct Arguments: Sendable {
    public let command: String
    public let values: [String: JSONValue]

    public init(command: String, values: [String: JSONValue]) {
        self.command = command
        self.values = values
    }

    public func has(_ name: String) -> Bool { values[name] != nil && values[name] != .null }

    public func string(_ name: String) throws -> String? {
        guard let value = present(name) else { return nil }
        guard case .string(let string) = value else { throw typeError(name, "a string", value) }
        guard string.utf8.count <= 4096 else {
            throw ControlError.invalidArgument("\(name) is longer than 4096 bytes")
        }
        return string
    }

    public func requiredString(_ name: String) throws -> String {
        guard let value = try string(name) else { throw missing(name) }
        return value
    }

    /// An integer argument that must fit `T` and lie in `range`.
    public func integer<T: FixedWidthInteger>(
        _ name: String, as type: T.Type = T.self, in range: ClosedRange<T>? = nil
    ) throws -> T? {
        guard let value = present(name) else { return nil }
        switch value {
        case .int, .uint:
            guard let exact = value.integer(as: T.self) else {
                throw ControlError.invalidArgument(
                    "\(name) \(value.serialized()) is out of range \(range.map(describe) ?? "\(T.min)...\(T.max)")")
            }
            if let range, !range.contains(exact) {
                throw ControlError.invalidArgument("\(name) \(exact) is out of range \(describe(range))")
            }
            return exact
        default:
            throw typeError(name, "an integer", value)
        }
    }

    public func requiredInteger<T: FixedWidthInteger>(
        _ name: String, as type: T.Type = T.self, in range: ClosedRange<T>? = nil
    ) throws -> T {
        guard let value = try integer(name, as: type, in: range) else { throw missing(name) }
        return value
    }

    /// Rejects arguments the command does not declare: a typo must not be
    /// silently ignored on a command that changes a NIC.
    func checkKnown(against spec: CommandSpec) throws {
        let known = Set(spec.arguments.map(\.name))
        for name in values.keys.sorted() where !known.contains(name) {
            let expected = spec.arguments.isEmpty
                ? "it takes no arguments" : "expected: " + spec.arguments.map(\.name).joined(separator: ", ")
            throw ControlError.invalidArgument("unknown argument \"\(name)\" for \(spec.name) (\(expected))")
        }
        for argument in spec.arguments where argument.required && !has(argument.name) {
            throw missing(argument.name)
        }
        for argument in spec.arguments {
            guard let value = present(argument.name) else { continue }
            let matches: Bool
            switch (argument.type, value) {
            case (.string, .string), (.boolean, .bool), (.object, .object), (.array, .array),
                (.integer, .int), (.integer, .uint), (.number, .int), (.number, .uint), (.number, .double):
                matches = true
            default:
                matches = false
            }
            if !matches { throw typeError(argument.name, "a value of type \(argument.type.rawValue)", value) }
            if case .string(let text) = value, text.utf8.count > 4096 {
                throw ControlError.invalidArgument("\(argument.name) is longer than 4096 bytes")
            }
            if let range = argument.range, value.integer(as: Int64.self).map(range.contains) != true {
                throw ControlError.invalidArgument("\(argument.name) \(value.serialized()) is out of range \(describe(range))")
            }
        }
    }

    /// The arguments as `T`, once ``checkKnown(against:)`` has passed: what
    /// is still wrong (an element of an array, an interface name) is
    /// `invalid_argument` naming the argument.
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        do {
            return try JSONValue.object(values).decode(as: T.self)
        } catch let error as DecodingError {
            switch error {
            case .keyNotFound(let key, _):
                throw missing(key.stringValue)
            case .dataCorrupted(let context), .typeMismatch(_, let context), .valueNotFound(_, let context):
                let path = context.codingPath.reduce("") { path, key in
                    key.intValue.map { "\(path)[\($0)]" } ?? (path.isEmpty ? key.stringValue : "\(path).\(key.stringValue)")
                }
                throw ControlError.invalidArgument("\(path.isEmpty ? command : path): \(context.debugDescription)")
            @unknown default:
                throw ControlError.invalidArgument("\(command): \(error)")
            }
        }
    }

    private func present(_ name: String) -> JSONValue? {
        guard let value = values[name], value != .null else { return nil }
        return value
    }

    private func missing(_ name: String) -> ControlError {
        .invalidArgument("\(command) needs the argument \"\(name)\"")
    }

    private func typeError(_ name: String, _ expected: String, _ value: JSONValue) -> ControlError {
        .invalidArgument("\(name) must be \(expected), got \(value.typeName)")
    }

    private func describe<T>(_ range: ClosedRange<T>) -> String { "\(range.lowerBound)...\(range.upperBound)" }
}
