import Logging
import TOMLKit

/// One key of the configuration: how to check a TOML value and where to put
/// it in ``SluiceConfig``. Build keys with the factories below (`integer`,
/// `choice`, `absolutePath`, `fileMode`, `group`) so adding a key is one line.
public struct ConfigKey: Sendable {
    public let name: String
    /// The values allowed, for people: `1...4096`, `trace|debug|info`.
    public let allowed: String
    public let doc: String
    /// The default as it would be written in TOML.
    public let defaultText: String
    /// Checks `value` (nil when the file leaves the key out, so defaults that
    /// depend on the machine, like group names, are checked too) and stores it.
    /// Returns a message for the operator when the value is wrong.
    let apply: @Sendable (_ value: TOMLValueConvertible?, _ config: inout SluiceConfig) -> String?
}

/// Why a value cannot be used, for the operator (the file, line and key are
/// added by the caller).
public struct ConfigValueRejected: Error, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
}

/// A `[table]` of the configuration file.
public struct ConfigSection: Sendable {
    public let name: String
    public let doc: String
    public let keys: [ConfigKey]

    public func key(named name: String) -> ConfigKey? { keys.first { $0.name == name } }
}

extension SluiceConfig {
    /// The whole configuration language. Every section and key is optional;
    /// absent keys keep the values in ``SluiceConfig/defaults``.
    public static let schema: [ConfigSection] = [
        ConfigSection(name: "daemon", doc: "The daemon process.", keys: [
            .absolutePath("state_dir", \.daemon.stateDirectory,
                          doc: "Persistent state: the NIC change journal that undoes Sluice's changes after a crash."),
            .choice("log_level", \.daemon.logLevel, doc: "Least severe level that is logged."),
        ]),
        ConfigSection(name: "control", doc: "The UNIX control socket that sluicectl talks to.", keys: [
            .absolutePath("socket", \.control.socketPath, maximumBytes: unixSocketPathMaximumBytes,
                          doc: "Path of the control socket."),
            .fileMode("socket_mode", \.control.socketMode, doc: "Permissions of the socket, as an octal string."),
            .group("socket_group", \.control.socketGroup,
                   doc: "Group that owns the socket; its members may connect (level read). \"\" = the daemon's own group."),
            .group("admin_group", \.control.adminGroup,
                   doc: "Members get level admin (may change things). \"\" = only root is admin."),
            .integer("max_clients", \.control.maxClients, in: 1...4096,
                     doc: "Clients connected at once; one more is told busy and closed."),
            .integer("idle_timeout_seconds", \.control.idleTimeoutSeconds, in: 1...86400,
                     doc: "A client silent for this long is disconnected."),
        ]),
        ConfigSection(name: "nic", doc: "How Sluice configures NICs.", keys: [
            .choice("backend", \.nic.backend,
                    doc: "ethtool interface: auto = netlink first, ioctl where netlink has no answer."),
        ]),
        ConfigSection(name: "plugins", doc: "Driver-quirk plugins.", keys: [
            .absolutePath("dir", \.plugins.directory, doc: "Directory the driver-quirk plugins (*.so) are loaded from."),
        ]),
    ]

    /// `sun_path` holds 108 bytes including the terminating NUL.
    public static let unixSocketPathMaximumBytes = 107
}

// MARK: - Key kinds

extension ConfigKey {
    /// PATH_MAX less the NUL.
    public static let pathMaximumBytes = 4095

    public static func integer(
        _ name: String, _ keyPath: WritableKeyPath<SluiceConfig, Int> & Sendable,
        in range: ClosedRange<Int>, doc: String
    ) -> ConfigKey {
        ConfigKey(
            name: name, allowed: "\(range.lowerBound)...\(range.upperBound)", doc: doc,
            defaultText: String(SluiceConfig.defaults[keyPath: keyPath])
        ) { value, config in
            guard let value else { return nil }
            guard let integer = value.int else { return mismatch(expected: "an integer", got: value) }
            guard range.contains(integer) else {
                return "\(integer) is out of range \(range.lowerBound)...\(range.upperBound)"
            }
            config[keyPath: keyPath] = integer
            return nil
        }
    }

    /// A key whose TOML value is a string that `convert` turns into the stored
    /// value, or rejects with a message for the operator.
    public static func string<Value>(
        _ name: String, _ keyPath: WritableKeyPath<SluiceConfig, Value> & Sendable,
        allowed: String, defaultText: String, doc: String, typeHint: String = "",
        convert: @escaping @Sendable (String) -> Result<Value, ConfigValueRejected>
    ) -> ConfigKey {
        ConfigKey(name: name, allowed: allowed, doc: doc, defaultText: defaultText) { value, config in
            guard let value else { return nil }
            guard let text = value.string else { return mismatch(expected: "a string", got: value) + typeHint }
            switch convert(text) {
            case .success(let converted):
                config[keyPath: keyPath] = converted
                return nil
            case .failure(let rejection):
                return rejection.message
            }
        }
    }

    /// A string that must be one of the cases of `Choice`, spelled as its raw value.
    public static func choice<Choice: RawRepresentable & CaseIterable & Sendable>(
        _ name: String, _ keyPath: WritableKeyPath<SluiceConfig, Choice> & Sendable, doc: String
    ) -> ConfigKey where Choice.RawValue == String {
        let names = Choice.allCases.map(\.rawValue)
        return .string(
            name, keyPath, allowed: names.joined(separator: "|"),
            defaultText: quoted(SluiceConfig.defaults[keyPath: keyPath].rawValue), doc: doc
        ) { text in
            guard let choice = Choice(rawValue: text) else {
                return .failure(ConfigValueRejected("\(quoted(text)) is not one of \(names.joined(separator: ", "))"))
            }
            return .success(choice)
        }
    }

    public static func absolutePath(
        _ name: String, _ keyPath: WritableKeyPath<SluiceConfig, String> & Sendable,
        maximumBytes: Int = pathMaximumBytes, doc: String
    ) -> ConfigKey {
        .string(
            name, keyPath, allowed: "absolute path, at most \(maximumBytes) bytes",
            defaultText: quoted(SluiceConfig.defaults[keyPath: keyPath]), doc: doc
        ) { path in
            guard path.hasPrefix("/") else { return .failure(ConfigValueRejected("\(quoted(path)) is not an absolute path")) }
            guard !path.utf8.contains(0) else { return .failure(ConfigValueRejected("the path contains a NUL character")) }
            let bytes = path.utf8.count
            guard bytes <= maximumBytes else {
                let limit = maximumBytes == SluiceConfig.unixSocketPathMaximumBytes
                    ? "a UNIX socket path (sun_path) holds at most \(maximumBytes)"
                    : "the limit is \(maximumBytes)"
                return .failure(ConfigValueRejected("the path is \(bytes) bytes long; \(limit)"))
            }
            return .success(path)
        }
    }

    /// Permission bits written as an octal string ("0660"): a bare TOML
    /// integer 660 would silently mean something else.
    public static func fileMode(
        _ name: String, _ keyPath: WritableKeyPath<SluiceConfig, UInt32> & Sendable, doc: String
    ) -> ConfigKey {
        .string(
            name, keyPath, allowed: "\"0000\"...\"0777\"",
            defaultText: quoted(octal(SluiceConfig.defaults[keyPath: keyPath])), doc: doc,
            typeHint: " (write the mode quoted, like \"0660\")"
        ) { text in
            let digits = text.utf8
            guard (1...4).contains(digits.count),
                  digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "7")).contains($0) }),
                  let mode = UInt32(text, radix: 8), mode <= 0o777
            else {
                return .failure(ConfigValueRejected("\(quoted(text)) is not an octal mode in 0000...0777"))
            }
            return .success(mode)
        }
    }

    /// A group name, looked up now so a typo fails at load time rather than
    /// when the socket is created. "" is allowed and means "no group".
    public static func group(
        _ name: String, _ keyPath: WritableKeyPath<SluiceConfig, ConfigGroup> & Sendable, doc: String
    ) -> ConfigKey {
        ConfigKey(
            name: name, allowed: "group name or \"\"", doc: doc,
            defaultText: quoted(SluiceConfig.defaults[keyPath: keyPath].name)
        ) { value, config in
            var group = config[keyPath: keyPath]
            if let value {
                guard let name = value.string else { return mismatch(expected: "a string", got: value) }
                group = ConfigGroup(name: name)
            }
            guard !group.isNone else {
                config[keyPath: keyPath] = ConfigGroup(name: "")
                return nil
            }
            switch GroupDatabase.lookUp(group.name) {
            case .found(let gid):
                config[keyPath: keyPath] = ConfigGroup(name: group.name, gid: gid)
                return nil
            case .notFound:
                return "group \(quoted(group.name)) does not exist"
            case .invalidName(let reason):
                return "\(quoted(group.name)) is not a valid group name: \(reason)"
            case .failed(let error):
                return "cannot look up group \(quoted(group.name)): \(error)"
            }
        }
    }

    static func mismatch(expected: String, got value: TOMLValueConvertible) -> String {
        "expected \(expected), got \(typeName(value))"
    }

    static func typeName(_ value: TOMLValueConvertible) -> String {
        switch value.type {
        case .bool: return "boolean"
        case .table: return "table"
        default: return value.type.description
        }
    }

    static func quoted(_ string: String) -> String { TOMLSyntax.quoted(string) }

    static func octal(_ mode: UInt32) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
