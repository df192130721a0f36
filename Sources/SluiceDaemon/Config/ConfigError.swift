/// One mistake in a configuration file, placed as precisely as we can:
/// `FILE:LINE: KEY: MESSAGE`, `FILE:LINE:COLUMN: syntax error: MESSAGE`, or
/// `FILE: MESSAGE` when no line applies (unreadable file, a default value that
/// does not fit this machine).
public struct ConfigError: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var column: Int?
    /// The dotted key path (`control.max_clients`), nil for syntax and file errors.
    public var key: String?
    public var message: String

    public init(file: String, line: Int? = nil, column: Int? = nil, key: String? = nil, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.key = key
        self.message = message
    }

    public var description: String {
        var place = file
        if let line {
            place += ":\(line)"
            if let column { place += ":\(column)" }
        }
        if let key { return "\(place): \(key): \(message)" }
        return "\(place): \(message)"
    }
}

/// Every mistake found in one configuration file, in line order, so the
/// operator fixes them all in one round. The description is one line each.
public struct ConfigErrors: Error, Equatable, Sendable, CustomStringConvertible {
    public var errors: [ConfigError]

    public init(_ errors: [ConfigError]) {
        // Errors without a line (defaults, whole-file problems) go last.
        self.errors = errors.sorted { ($0.line ?? .max, $0.column ?? 0) < ($1.line ?? .max, $1.column ?? 0) }
    }

    /// At most this many lines in ``description``: a binary file fed as
    /// configuration must not produce a megabyte of errors (a control reply
    /// carries the description).
    public static let describedLimit = 50

    public var description: String {
        var lines = errors.prefix(Self.describedLimit).map(\.description)
        if errors.count > Self.describedLimit {
            lines.append("(and \(errors.count - Self.describedLimit) more errors)")
        }
        return lines.joined(separator: "\n")
    }
}
