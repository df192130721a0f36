import SluiceProtocol

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
    public var kind: ModuleKind
    /// The option's path, or "" when the error is about the kind itself.
    public var option: String
    public var reason: String

    public init(kind: ModuleKind, option: String, reason: String) {
        self.kind = kind
        self.option = option
        self.reason = reason
    }

    public var description: String {
        option.isEmpty ? "module '\(kind)': \(reason)" : "module '\(kind)', option '\(option)': \(reason)"
    }
}

/// What the registry knows of a module kind: its factory, the options its
/// parser reads, and what it does in a line. The options are the parser's own
/// (it reads each through ``OptionReader`` by these), so a listing cannot
/// drift from what config accepts.
public struct ModuleDescriptor: Sendable {
    public let kind: ModuleKind
    public let summary: String
    public let options: [ModuleOption]
    /// Whether the kind's modules read the driver's RX metadata: without
    /// such a module the daemon loads the plain XDP program (nothing would
    /// read what the metadata one stores, at a cost per packet).
    public let readsRxMetadata: Bool
    private let check: @Sendable ([String: ModuleOptionValue]) throws -> Void
    private let build: @Sendable ([String: ModuleOptionValue]) throws -> PacketModule

    init<Options>(
        kind: ModuleKind, summary: String, options: [ModuleOption], readsRxMetadata: Bool = false,
        parse: @escaping @Sendable (OptionReader) throws -> Options,
        make: @escaping @Sendable (Options) throws -> PacketModule
    ) {
        self.kind = kind
        self.summary = summary
        self.options = options
        self.readsRxMetadata = readsRxMetadata
        let read = { @Sendable (table: [String: ModuleOptionValue]) throws -> Options in
            try parse(try OptionReader(kind: kind, table, known: options.map(\.name)))
        }
        check = { _ = try read($0) }
        build = { try make(try read($0)) }
    }

    /// Checks `options` exactly as ``make(_:)`` does, without building the
    /// module: no file is created (pcap) and no table is allocated (count),
    /// so config validation has no side effects.
    public func validate(_ options: [String: ModuleOptionValue]) throws { try check(options) }

    public func make(_ options: [String: ModuleOptionValue]) throws -> PacketModule { try build(options) }
}

extension ModuleKind {
    /// The module registry: each kind's factory, options and summary.
    public var descriptor: ModuleDescriptor {
        switch self {
        case .count: CountModule.descriptor
        case .filter: FilterModule.descriptor
        case .pcap: PcapModule.descriptor
        case .reflect: ReflectModule.descriptor
        case .latency: LatencyModule.descriptor
        }
    }
}

/// One option of a module kind, as its parser reads it.
public struct ModuleOption: Sendable, Equatable {
    public enum ValueType: String, Sendable {
        case string, integer, array
    }

    public let name: String
    public let type: ValueType
    /// The integers accepted (type `integer`).
    public let range: ClosedRange<Int64>?
    /// The strings accepted (type `string`); [] = any.
    public let choices: [String]
    /// As a config file spells it; nil = required.
    public let defaultText: String?
    public let summary: String

    public init(
        _ name: String, _ type: ValueType, range: ClosedRange<Int64>? = nil, choices: [String] = [],
        default defaultText: String?, _ summary: String
    ) {
        self.name = name
        self.type = type
        self.range = range
        self.choices = choices
        self.defaultText = defaultText
        self.summary = summary
    }
}

/// Reads a table of options, rejecting unknown keys and wrong types with an
/// error that names the option.
struct OptionReader {
    let kind: ModuleKind
    let path: String
    let table: [String: ModuleOptionValue]

    init(kind: ModuleKind, path: String = "", _ table: [String: ModuleOptionValue], known: [String]) throws {
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

    func integer(_ option: ModuleOption) throws -> Int64? { try integer(option.name, in: option.range!) }

    func string(_ option: ModuleOption) throws -> String? {
        option.choices.isEmpty ? try string(option.name) : try choice(option.name, option.choices)
    }

    func array(_ option: ModuleOption) throws -> [ModuleOptionValue]? { try array(option.name) }

    /// A string that must be one of `choices`.
    func choice(_ key: String, _ choices: [String]) throws -> String? {
        guard let text = try string(key) else { return nil }
        guard choices.contains(text) else {
            throw error(key, "'\(text)' is not one of \(choices.joined(separator: ", "))")
        }
        return text
    }
}
