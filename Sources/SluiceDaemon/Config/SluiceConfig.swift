import Logging

/// The daemon's configuration (`sluiced --config FILE`), decoded and checked
/// against ``SluiceConfig/schema``. Property initial values are the defaults
/// used for keys the file leaves out; the schema reads them from here so that
/// each default is written once.
public struct SluiceConfig: Equatable, Sendable {
    public var daemon = Daemon()
    public var control = Control()
    public var nic = NIC()
    public var plugins = Plugins()
    public var pipeline = Pipeline()
    public var metrics = Metrics()
    /// The `[[interface]]` tables, in file order; none by default, so the
    /// shipped configuration takes no NIC by itself.
    public var interfaces: [Interface] = []

    public init() {}

    /// Every key at its default, before group names are looked up (so the
    /// gids in it are nil). ``parse(text:file:)`` of an empty file returns
    /// this with the gids resolved.
    public static let defaults = SluiceConfig()

    public struct Daemon: Equatable, Sendable {
        /// Holds the NIC change journal, so it must survive restarts and crashes.
        public var stateDirectory = "/var/lib/sluice"
        public var logLevel = Logger.Level.info
    }

    public struct Control: Equatable, Sendable {
        public var socketPath = "/run/sluice/sluiced.sock"
        public var socketMode: UInt32 = 0o660
        /// Owns the socket; name "" means the daemon's own group.
        public var socketGroup = ConfigGroup(name: "sluice")
        /// Members are `admin`; name "" means only root is.
        public var adminGroup = ConfigGroup(name: "")
        public var maxClients = 64
        public var idleTimeoutSeconds = 300
    }

    public struct NIC: Equatable, Sendable {
        public var backend = Backend.auto

        public enum Backend: String, CaseIterable, Sendable {
            /// Netlink first, ioctl where netlink has no answer.
            case auto
            case netlink
            case ioctl
        }
    }

    public struct Plugins: Equatable, Sendable {
        public var directory = "/usr/lib/sluice/plugins"
    }
}

/// A group named in the configuration, with the gid it resolved to when the
/// configuration was validated.
public struct ConfigGroup: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// "" stands for "no group" (the key's documentation says what that means).
    public var name: String
    /// Set once `name` has been looked up; nil for "" and in ``SluiceConfig/defaults``.
    public var gid: UInt32?

    public init(name: String, gid: UInt32? = nil) {
        self.name = name
        self.gid = gid
    }

    public var isNone: Bool { name.isEmpty }

    public var description: String {
        if name.isEmpty { return "(none)" }
        if let gid { return "\(name) (gid \(gid))" }
        return name
    }
}
