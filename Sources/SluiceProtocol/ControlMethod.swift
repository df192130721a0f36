/// Who may run a command. `admin` is uid 0 or a member of the admin group.
public enum AccessLevel: String, Codable, Sendable, Comparable {
    case read
    case admin

    public static func < (lhs: AccessLevel, rhs: AccessLevel) -> Bool {
        lhs == .read && rhs == .admin
    }
}

/// The JSON type an argument takes, shown by `help`.
public enum ArgumentType: String, Codable, Sendable {
    case string, integer, boolean, object, array, number
}

/// One request argument as `help` lists it. The server checks requests
/// against it before decoding: unknown names, missing required ones, the
/// JSON type and, for integers, `range`.
public struct ArgumentSpec: Codable, Sendable, Equatable {
    public var name: String
    public var type: ArgumentType
    public var required: Bool
    public var summary: String
    /// The values an integer argument accepts; not part of `help`'s reply.
    public var range: ClosedRange<Int64>?

    public init(_ name: String, _ type: ArgumentType, required: Bool = false, _ summary: String) {
        self.name = name; self.type = type; self.required = required; self.summary = summary
    }

    /// An argument named by the request's coding key, so that `help` and the decoder cannot disagree.
    public init(_ key: some CodingKey, _ type: ArgumentType, required: Bool = false, _ summary: String) {
        self.init(key.stringValue, type, required: required, summary)
    }

    /// An integer argument whose values lie in `range` (the type's whole range, or narrower).
    public init<T: FixedWidthInteger>(
        _ key: some CodingKey, _ integer: T.Type, in range: ClosedRange<T> = T.min...T.max,
        required: Bool = false, _ summary: String
    ) {
        self.init(key.stringValue, .integer, required: required, summary)
        self.range = Int64(clamping: range.lowerBound)...Int64(clamping: range.upperBound)
    }

    enum CodingKeys: String, CodingKey { case name, type, required, summary }
}

/// A command as `help` lists it.
public struct CommandSpec: Codable, Sendable, Equatable {
    /// `noun.verb`, e.g. `channels.set`.
    public var name: String
    public var level: AccessLevel
    public var summary: String
    public var arguments: [ArgumentSpec]

    public init(_ name: String, level: AccessLevel, _ summary: String, arguments: [ArgumentSpec] = []) {
        self.name = name; self.level = level; self.summary = summary; self.arguments = arguments
    }

    enum CodingKeys: String, CodingKey { case name, level, summary, arguments }
}

/// One method of the control protocol, declared once: its name, level,
/// arguments, and the types its request decodes into and its reply encodes
/// from. The daemon serves it, `sluicectl` calls it, `help` lists it, all
/// from this declaration.
public protocol ControlMethod {
    associatedtype Request: Codable & Sendable = NoArguments
    associatedtype Response: Codable & Sendable
    static var name: String { get }
    static var level: AccessLevel { get }
    static var summary: String { get }
    /// What `help` lists and the server checks; named by `Request`'s coding keys.
    static var arguments: [ArgumentSpec] { get }
}

extension ControlMethod {
    public static var arguments: [ArgumentSpec] { [] }
    public static var spec: CommandSpec { CommandSpec(name, level: level, summary, arguments: arguments) }
}

/// The request of a method without arguments.
public struct NoArguments: Codable, Sendable, Equatable {
    public init() {}
}

/// `{"unsubscribed": true}`: whether a stream was running.
public struct Unsubscribed: Codable, Sendable, Equatable {
    public var unsubscribed: Bool
    public init(unsubscribed: Bool) { self.unsubscribed = unsubscribed }
    enum CodingKeys: String, CodingKey { case unsubscribed }
}
