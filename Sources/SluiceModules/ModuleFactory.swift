/// One option value as it comes from config (TOML): the daemon converts its
/// parsed table into these so that this module needs no TOML library.
public enum ModuleOptionValue: Sendable, Equatable {
    case string(String)
    case integer(Int64)
    case bool(Bool)
    case array([ModuleOptionValue])
    case table([String: ModuleOptionValue])

    var typeName: String {
        switch self {
        case .string: return "a string"
        case .integer: return "an integer"
        case .bool: return "a boolean"
        case .array: return "an array"
        case .table: return "a table"
        }
    }
}

/// A module configuration that cannot be used, naming the module kind and
/// the option (with its path inside arrays and tables, e.g. `rules[2].dport`).
public struct ModuleConfigurationError: Error, Equatable, Sendable, CustomStringConvertible {
    public var kind: String
    /// The option's path, or "" when the error is about the kind itself.
    public var option: String
    public var reason: String

    public init(kind: String, option: String, reason: String) {
        self.kind = kind
        self.option = option
        self.reason = reason
    }

    public var description: String {
        option.isEmpty ? "module '\(kind)': \(reason)" : "module '\(kind)', option '\(option)': \(reason)"
    }
}

/// Builds modules from config: `kind` and an options table.
public enum ModuleFactory {
    public static let kinds = ["count", "filter", "pcap", "reflect"]

    /// Checks `kind` and `options` exactly as ``make(kind:options:)`` does,
    /// without building the module: no file is created (pcap) and no table
    /// is allocated (count), so config validation has no side effects.
    public static func validate(kind: String, options: [String: ModuleOptionValue]) throws {
        switch kind {
        case "count": _ = try CountModule.Options(kind: kind, options)
        case "filter": _ = try FilterModule.Options(kind: kind, options)
        case "pcap": _ = try PcapModule.Options(kind: kind, options)
        case "reflect": _ = try ReflectModule.Options(kind: kind, options)
        default: throw unknownKind(kind)
        }
    }

    public static func make(kind: String, options: [String: ModuleOptionValue]) throws -> PacketModule {
        switch kind {
        case "count": return CountModule(options: try CountModule.Options(kind: kind, options))
        case "filter": return FilterModule(options: try FilterModule.Options(kind: kind, options))
        case "pcap": return try PcapModule(options: try PcapModule.Options(kind: kind, options))
        case "reflect": return ReflectModule(options: try ReflectModule.Options(kind: kind, options))
        default:
            throw unknownKind(kind)
        }
    }

    static func unknownKind(_ kind: String) -> ModuleConfigurationError {
        ModuleConfigurationError(
            kind: kind, option: "", reason: "unknown module kind; known kinds: \(kinds.joined(separator: ", "))")
    }
}

/// Reads a table of options, rejecting unknown keys and wrong types with an
/// error that names the option.
struct OptionReader {
    let kind: String
    let path: String
    let table: [String: ModuleOptionValue]

    init(kind: String, path: String = "", _ table: [String: ModuleOptionValue], known: [String]) throws {
        self.kind = kind
        self.path = path
        self.table = table
        for key in table.keys.sorted() where !known.contains(key) {
            throw ModuleConfigurationError(
                kind: kind, option: name(key),
                reason: "unknown option; known options: \(known.isEmpty ? "none" : known.joined(separator: ", "))")
        }
    }

    func name(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func error(_ key: String, _ reason: String) -> ModuleConfigurationError {
        ModuleConfigurationError(kind: kind, option: name(key), reason: reason)
    }

    func integer(_ key: String, in range: ClosedRange<Int64>) throws -> Int64? {
        guard let value = table[key] else { return nil }
        guard case .integer(let number) = value else {
            throw error(key, "expected an integer, got \(value.typeName)")
        }
        guard range.contains(number) else {
            throw error(key, "\(number) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }

    func string(_ key: String) throws -> String? {
        guard let value = table[key] else { return nil }
        guard case .string(let text) = value else {
            throw error(key, "expected a string, got \(value.typeName)")
        }
        return text
    }

    func array(_ key: String) throws -> [ModuleOptionValue]? {
        guard let value = table[key] else { return nil }
        guard case .array(let items) = value else {
            throw error(key, "expected an array, got \(value.typeName)")
        }
        return items
    }

    /// A string that must be one of `choices`.
    func choice(_ key: String, _ choices: [String]) throws -> String? {
        guard let text = try string(key) else { return nil }
        guard choices.contains(text) else {
            throw error(key, "'\(text)' is not one of \(choices.joined(separator: ", "))")
        }
        return text
    }
}
