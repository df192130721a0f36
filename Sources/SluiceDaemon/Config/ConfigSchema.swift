import Logging
import SluiceProtocol
import SluiceSystem

/// A value the schema writes keys into: ``SluiceConfig`` for the `[tables]`,
/// ``SluiceConfig/Interface`` for each `[[interface]]`. `schemaDefaults`
/// holds the defaults the key factories document.
public protocol ConfigSchemaRoot: SendableMetatype {
    static var schemaDefaults: Self { get }
}

extension SluiceConfig: ConfigSchemaRoot {
    public static var schemaDefaults: SluiceConfig { defaults }
}

/// One key of the configuration: how to check a TOML value and where to put
/// it in `Root`. Build keys with the factories below (`integer`, `choice`,
/// `absolutePath`, `fileMode`, `group`, `boolean`, `list`) so adding a key is one line.
public struct ConfigKey<Root>: Sendable {
    public let name: String
    /// The values allowed, for people: `1...4096`, `trace|debug|info`.
    public let allowed: String
    public let doc: String
    /// The default as it would be written in TOML.
    public let defaultText: String
    /// Checks `value` (nil when the file leaves the key out, so defaults that
    /// depend on the machine, like group names, are checked too) and stores it.
    /// Returns a message for the operator when the value is wrong.
    let apply: @Sendable (_ value: TOMLValue?, _ config: inout Root) -> String?
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
    public let keys: [ConfigKey<SluiceConfig>]
    /// Arrays of tables inside this table (`[[pipeline.modules]]`), decoded
    /// on their own rather than as keys.
    public let tableArrays: [String]

    public init(name: String, doc: String, keys: [ConfigKey<SluiceConfig>], tableArrays: [String] = []) {
        self.name = name
        self.doc = doc
        self.keys = keys
        self.tableArrays = tableArrays
    }

    public func key(named name: String) -> ConfigKey<SluiceConfig>? { keys.first { $0.name == name } }
}

extension SluiceConfig {
    /// The whole configuration language. Every section and key is optional;
    /// absent keys keep the values in ``SluiceConfig/defaults``.
    public static let schema: [ConfigSection] = [
        ConfigSection(name: "daemon", doc: "The daemon process.", keys: [
            .absolutePath("state_dir", \.daemon.stateDirectory, makes: .itself,
                          doc: "Persistent state: the NIC change journal that undoes Sluice's changes after a crash."),
            .choice("log_level", \.daemon.logLevel, doc: "Least severe level that is logged."),
        ]),
        ConfigSection(name: "control", doc: "The UNIX control socket that sluicectl talks to.", keys: [
            .absolutePath("socket", \.control.socketPath, maximumBytes: unixSocketPathMaximumBytes, makes: .parent,
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
        ConfigSection(name: "pipeline", doc: "The AF_XDP receive pipeline.", keys: [
            .choice("mode", \.pipeline.mode,
                    doc: "inline = modules on the RX thread;"
                        + " pipelined = RX thread -> lock-free ring -> worker thread."),
            .boolean("autostart", \.pipeline.autostart,
                     doc: "Start the pipeline when sluiced starts (else: pipeline.start)."),
            .integer("batch_size", \.pipeline.batchSize, in: Pipeline.batchSizeRange,
                     doc: "Descriptors taken per ring peek."),
            .integer("frame_size", \.pipeline.frameSize, oneOf: Pipeline.frameSizes, doc: "Bytes per UMEM frame."),
            .integer("frames", \.pipeline.frames, powerOfTwoIn: Pipeline.framesRange, doc: "UMEM frames per socket."),
            .integer("rx_ring", \.pipeline.rxRing, powerOfTwoIn: Pipeline.xdpRingRange, doc: "AF_XDP RX ring size."),
            .integer("tx_ring", \.pipeline.txRing, powerOfTwoIn: Pipeline.xdpRingRange, doc: "AF_XDP TX ring size."),
            .integer("fill_ring", \.pipeline.fillRing, powerOfTwoIn: Pipeline.xdpRingRange,
                     doc: "AF_XDP fill ring size."),
            .integer("completion_ring", \.pipeline.completionRing, powerOfTwoIn: Pipeline.xdpRingRange,
                     doc: "AF_XDP completion ring size."),
            .integer("handoff_ring", \.pipeline.handoffRing, powerOfTwoIn: Pipeline.handoffRingRange,
                     doc: "RX thread -> worker ring size (pipelined)."),
        ], tableArrays: ["modules"]),
        ConfigSection(name: "metrics", doc: "Prometheus metrics over HTTP.", keys: metricsKeys),
    ]

    /// Top-level arrays of tables, `[[interface]]`, decoded on their own.
    public static let tableArrays = ["interface"]

    /// The keys of each `[[interface]]`.
    public static let interfaceKeys: [ConfigKey<Interface>] = [
        .string("name", \.name, allowed: "interface name, 1...\(InterfaceName.maximumBytes) bytes", defaultText: "(required)",
                doc: "The network interface Sluice takes queues of.") { name in
            InterfaceName.problem(name).map { .failure(ConfigValueRejected($0)) } ?? .success(name)
        },
        .string("plugin", \.plugin, allowed: "plugin name or \"\"", defaultText: "\"\"",
                doc: "Force a driver plugin by name; \"\" = the plugin with the highest score.") { name in
            if name.isEmpty { return .success(nil) }
            return Interface.pluginNameProblem(name).map { .failure(ConfigValueRejected($0)) } ?? .success(name)
        },
        .list("channels", allowed: "unique integers 0...65535", defaultText: "(all receive channels)",
              doc: "Channels to bind AF_XDP sockets to.", maximumCount: 65536, unique: { "channel \($0)" },
              store: { $0.channels = $1 }, convert: { Interface.channel($0) }),
        .choice("bind_mode", \.bindMode,
                doc: "auto = zero-copy, falling back to copy; zerocopy = fail where the driver cannot; copy."),
        .choice("attach_mode", \.attachMode, doc: "native = driver XDP; skb = generic XDP."),
        .cpuList("rx_cpus", \.rxCPUs,
                 doc: "Pin the RX thread of the i-th channel to rx_cpus[i % count]; [] = no pinning."),
        .cpuList("worker_cpus", \.workerCPUs, doc: "The same for worker threads (pipelined)."),
        .list("prefilter_protocols",
              allowed: Interface.PrefilterProtocol.allCases.map(\.rawValue).joined(separator: "|"), defaultText: "[]",
              doc: "[] = every packet to Sluice; else only these protocols, the rest to the kernel.",
              maximumCount: Interface.PrefilterProtocol.allCases.count, unique: { ConfigText.quoted($0.rawValue) },
              store: { $0.prefilterProtocols = $1 }, convert: { Interface.prefilterProtocol($0) }),
        .list("prefilter_ports",
              allowed: "ports 0...65535 or \"LOW-HIGH\" strings, at most \(Interface.maximumPrefilterPorts)",
              defaultText: "[]", doc: "With udp/tcp: only these destination ports.",
              maximumCount: Interface.maximumPrefilterPorts, unique: { Interface.describe(ports: $0) },
              store: { $0.prefilterPorts = $1 }, convert: { Interface.portRange($0) }),
        .boolean("busy_poll", \.busyPoll,
                 doc: "Preferred busy polling: RX threads kick the NAPI (recvfrom) while traffic flows instead of"
                    + " sleeping in poll(); idle, they sleep as without. Needs Linux 5.11+ (SO_PREFER_BUSY_POLL)."),
        .integer("busy_poll_usecs", \.busyPollMicroseconds, in: Interface.busyPollMicrosecondsRange,
                 doc: "SO_BUSY_POLL of each socket, in microseconds (with busy_poll)."),
        .integer("busy_poll_budget", \.busyPollBudget, in: Interface.busyPollBudgetRange,
                 doc: "SO_BUSY_POLL_BUDGET: packets per NAPI poll (with busy_poll)."),
        .integer("napi_defer_hard_irqs", \.napiDeferHardIRQs, in: Interface.napiDeferHardIRQsRange,
                 doc: "Written to /sys/class/net/IF/napi_defer_hard_irqs while the pipeline runs (with busy_poll);"
                    + " restored at stop and after a crash."),
        .integer("gro_flush_timeout", \.groFlushTimeoutNanoseconds, in: Interface.groFlushTimeoutRange,
                 doc: "Nanoseconds, written to /sys/class/net/IF/gro_flush_timeout while the pipeline runs"
                    + " (with busy_poll); restored at stop and after a crash."),
        .choice("rx_metadata", \.rxMetadata,
                doc: "auto = the driver's RX timestamp and RSS hash for pcap and count where the kernel has the"
                    + " XDP metadata kfuncs (Linux 6.3+) and attach_mode is native; off = never."),
        .choice("multi_buffer", \.multiBuffer,
                doc: "auto = packets larger than one UMEM frame arrive as chains where the kernel (6.6+) and driver"
                    + " have XDP multi-buffer; on = refuse to start without it; off = never. Without it, an MTU"
                    + " above frame_size - 270 (native XDP: at most page size - 590) refuses to start."),
    ]

    /// `sun_path` holds 108 bytes including the terminating NUL.
    public static let unixSocketPathMaximumBytes = 107
}

// MARK: - Key kinds

extension ConfigKey {
    /// PATH_MAX less the NUL.
    public static var pathMaximumBytes: Int { 4095 }
}

extension ConfigKey where Root: ConfigSchemaRoot {
    public static func integer(
        _ name: String, _ keyPath: WritableKeyPath<Root, Int> & Sendable,
        in range: ClosedRange<Int>, doc: String
    ) -> ConfigKey {
        .integer(name, keyPath, allowed: "\(range.lowerBound)...\(range.upperBound)", doc: doc) { integer in
            range.contains(integer) ? nil : "\(integer) is out of range \(range.lowerBound)...\(range.upperBound)"
        }
    }

    /// Ring and UMEM sizes: the kernel and the rings mask indices, so only
    /// powers of two work.
    public static func integer(
        _ name: String, _ keyPath: WritableKeyPath<Root, Int> & Sendable,
        powerOfTwoIn range: ClosedRange<Int>, doc: String
    ) -> ConfigKey {
        let allowed = "power of two, \(range.lowerBound)...\(range.upperBound)"
        return .integer(name, keyPath, allowed: allowed, doc: doc) { integer in
            guard range.contains(integer) else {
                return "\(integer) is out of range \(range.lowerBound)...\(range.upperBound)"
            }
            return integer & (integer - 1) == 0 ? nil : "\(integer) is not a power of two"
        }
    }

    public static func integer(
        _ name: String, _ keyPath: WritableKeyPath<Root, Int> & Sendable,
        oneOf choices: [Int], doc: String
    ) -> ConfigKey {
        let names = choices.map(String.init)
        return .integer(name, keyPath, allowed: names.joined(separator: "|"), doc: doc) { integer in
            choices.contains(integer) ? nil : "\(integer) is not one of \(names.joined(separator: ", "))"
        }
    }

    /// `check` returns why an integer of the right type is still wrong.
    static func integer(
        _ name: String, _ keyPath: WritableKeyPath<Root, Int> & Sendable,
        allowed: String, doc: String, check: @escaping @Sendable (Int) -> String?
    ) -> ConfigKey {
        ConfigKey(
            name: name, allowed: allowed, doc: doc, defaultText: String(Root.schemaDefaults[keyPath: keyPath])
        ) { value, config in
            guard let value else { return nil }
            guard let integer = value.int else { return ConfigText.mismatch(expected: "an integer", got: value) }
            if let problem = check(integer) { return problem }
            config[keyPath: keyPath] = integer
            return nil
        }
    }

    public static func boolean(
        _ name: String, _ keyPath: WritableKeyPath<Root, Bool> & Sendable, doc: String
    ) -> ConfigKey {
        ConfigKey(
            name: name, allowed: "true|false", doc: doc, defaultText: String(Root.schemaDefaults[keyPath: keyPath])
        ) { value, config in
            guard let value else { return nil }
            guard let flag = value.bool else { return ConfigText.mismatch(expected: "true or false", got: value) }
            config[keyPath: keyPath] = flag
            return nil
        }
    }

    /// An array whose items `convert` checks one by one; at most
    /// `maximumCount` items, and with `unique` no item twice (`unique`
    /// names an item in the message). `store` runs only when every item is good.
    static func list<Item: Hashable & SendableMetatype>(
        _ name: String, allowed: String, defaultText: String, doc: String,
        maximumCount: Int, unique: (@Sendable (Item) -> String)?,
        store: @escaping @Sendable (inout Root, [Item]) -> Void,
        convert: @escaping @Sendable (TOMLValue) -> Result<Item, ConfigValueRejected>
    ) -> ConfigKey {
        ConfigKey(name: name, allowed: allowed, doc: doc, defaultText: defaultText) { value, config in
            guard let value else { return nil }
            guard let array = value.array else { return ConfigText.mismatch(expected: "an array", got: value) }
            guard array.count <= maximumCount else {
                return "\(array.count) items, at most \(maximumCount) allowed"
            }
            var items: [Item] = []
            var seen: Set<Item> = []
            for element in array {
                switch convert(element) {
                case .failure(let rejection):
                    return rejection.message
                case .success(let item):
                    if let unique, !seen.insert(item).inserted { return "\(unique(item)) is listed twice" }
                    items.append(item)
                }
            }
            store(&config, items)
            return nil
        }
    }

    /// CPU numbers for thread pinning; the same CPU may serve several threads.
    public static func cpuList(
        _ name: String, _ keyPath: WritableKeyPath<Root, [Int]> & Sendable, doc: String
    ) -> ConfigKey {
        let cpus = SluiceConfig.Interface.cpuRange
        return .list(
            name, allowed: "integers \(cpus.lowerBound)...\(cpus.upperBound)", defaultText: "[]", doc: doc,
            maximumCount: cpus.count, unique: nil, store: { $0[keyPath: keyPath] = $1 }
        ) { value in
            guard let cpu = value.int else {
                return .failure(ConfigValueRejected(ConfigText.mismatch(expected: "integers", got: value)))
            }
            guard cpus.contains(cpu) else {
                let range = "\(cpus.lowerBound)...\(cpus.upperBound)"
                return .failure(ConfigValueRejected("CPU \(cpu) is out of range \(range)"))
            }
            return .success(cpu)
        }
    }

    /// A key whose TOML value is a string that `convert` turns into the stored
    /// value, or rejects with a message for the operator.
    public static func string<Value>(
        _ name: String, _ keyPath: WritableKeyPath<Root, Value> & Sendable,
        allowed: String, defaultText: String, doc: String, typeHint: String = "",
        convert: @escaping @Sendable (String) -> Result<Value, ConfigValueRejected>
    ) -> ConfigKey {
        ConfigKey(name: name, allowed: allowed, doc: doc, defaultText: defaultText) { value, config in
            guard let value else { return nil }
            guard let text = value.string else { return ConfigText.mismatch(expected: "a string", got: value) + typeHint }
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
        _ name: String, _ keyPath: WritableKeyPath<Root, Choice> & Sendable, doc: String
    ) -> ConfigKey where Choice.RawValue == String {
        let names = Choice.allCases.map(\.rawValue)
        return .string(
            name, keyPath, allowed: names.joined(separator: "|"),
            defaultText: quoted(Root.schemaDefaults[keyPath: keyPath].rawValue), doc: doc
        ) { text in
            guard let choice = Choice(rawValue: text) else {
                return .failure(ConfigValueRejected("\(quoted(text)) is not one of \(names.joined(separator: ", "))"))
            }
            return .success(choice)
        }
    }

    public static func absolutePath(
        _ name: String, _ keyPath: WritableKeyPath<Root, String> & Sendable,
        maximumBytes: Int = pathMaximumBytes, makes directory: MadeDirectory? = nil, doc: String
    ) -> ConfigKey {
        .string(
            name, keyPath, allowed: "absolute path, at most \(maximumBytes) bytes",
            defaultText: quoted(Root.schemaDefaults[keyPath: keyPath]), doc: doc
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
            if let directory, let problem = Directory.problem(creating: directory.path(for: path)) {
                return .failure(ConfigValueRejected(
                    "\(directory.role)\(problem); \(Directory.fix)"))
            }
            return .success(path)
        }
    }

    /// A directory the daemon makes at start when it is missing, so the
    /// configuration is refused when it could never be made.
    public enum MadeDirectory: Sendable {
        /// The key names the directory itself (`state_dir`).
        case itself
        /// The key names a file or socket inside it (`socket`).
        case parent

        func path(for value: String) -> String { self == .itself ? value : Directory.parent(of: value) }
        var role: String { self == .itself ? "" : "its directory " }
    }

    /// Permission bits written as an octal string ("0660"): a bare TOML
    /// integer 660 would silently mean something else.
    public static func fileMode(
        _ name: String, _ keyPath: WritableKeyPath<Root, UInt32> & Sendable, doc: String
    ) -> ConfigKey {
        .string(
            name, keyPath, allowed: "\"0000\"...\"0777\"",
            defaultText: quoted(octal(Root.schemaDefaults[keyPath: keyPath])), doc: doc,
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

}

extension ConfigKey where Root == SluiceConfig {
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
                guard let name = value.string else { return ConfigText.mismatch(expected: "a string", got: value) }
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

}

extension ConfigKey {
    static func quoted(_ string: String) -> String { TOMLSyntax.quoted(string) }

    static func octal(_ mode: UInt32) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}

/// Wording shared by every key kind.
enum ConfigText {
    static func mismatch(expected: String, got value: TOMLValue) -> String {
        "expected \(expected), got \(value.typeName)"
    }

    static func quoted(_ string: String) -> String { TOMLSyntax.quoted(string) }
}
