/// Every method of protocol v1 that is declared as a ``ControlMethod``.
public enum Methods {}

extension Methods {
    public enum Help: ControlMethod {
        public static let name = "help"
        public static let level = AccessLevel.read
        public static let summary = "List every command with its arguments and level"

        public struct Response: Codable, Sendable, Equatable {
            public var commands: [CommandSpec]
            public init(commands: [CommandSpec]) { self.commands = commands }
            enum CodingKeys: String, CodingKey { case commands }
        }
    }

    public enum StatsGet: ControlMethod {
        public static let name = "stats.get"
        public static let level = AccessLevel.read
        public static let summary = "Counters: uptime, control socket, pipelines (per socket, per module)"

        public struct Response: Codable, Sendable, Equatable {
            public var uptimeSeconds: Double
            public var control: ControlServerStatistics
            public var pipelines: [PipelineReport]

            public init(uptimeSeconds: Double, control: ControlServerStatistics, pipelines: [PipelineReport]) {
                self.uptimeSeconds = uptimeSeconds; self.control = control; self.pipelines = pipelines
            }

            enum CodingKeys: String, CodingKey { case uptimeSeconds = "uptime_seconds", control, pipelines }
        }
    }

    public enum StatsSubscribe: ControlMethod {
        public static let name = "stats.subscribe"
        public static let level = AccessLevel.read
        public static let summary = "Stream statistics as events {\"id\":..,\"event\":\"stats\",\"data\":{..}} on this connection; every \"totals\" object gets a sibling \"rates\" (per second)"
        public static let arguments = [
            ArgumentSpec(Request.CodingKeys.intervalMilliseconds, Int.self, in: 100...60_000,
                         "milliseconds between events, 100...60000 (default 1000)"),
        ]

        public struct Request: Codable, Sendable, Equatable {
            public var intervalMilliseconds: Int?
            public init(intervalMilliseconds: Int? = nil) { self.intervalMilliseconds = intervalMilliseconds }
            public enum CodingKeys: String, CodingKey { case intervalMilliseconds = "interval_ms" }
        }

        public struct Response: Codable, Sendable, Equatable {
            public var subscribed: String
            public var intervalMilliseconds: Int

            public init(subscribed: String, intervalMilliseconds: Int) {
                self.subscribed = subscribed; self.intervalMilliseconds = intervalMilliseconds
            }

            enum CodingKeys: String, CodingKey { case subscribed, intervalMilliseconds = "interval_ms" }
        }
    }

    public enum StatsUnsubscribe: ControlMethod {
        public typealias Response = Unsubscribed
        public static let name = "stats.unsubscribe"
        public static let level = AccessLevel.read
        public static let summary = "Stop the stats stream on this connection"
    }

    public enum Status: ControlMethod {
        public static let name = "status"
        public static let level = AccessLevel.read
        public static let summary = "Daemon version, pid, uptime, socket and clients"

        public struct Response: Codable, Sendable, Equatable {
            public var version: String
            public var `protocol`: Int
            public var pid: Int32
            public var uptimeSeconds: Double
            public var startedAt: Int
            public var configFile: String
            public var socket: String
            public var stateDirectory: String
            public var clients: Int
            public var commandsServed: Int
            /// The Prometheus endpoint's address; null (not omitted) when there is none.
            public var metrics: String?
            public var you: Peer

            public struct Peer: Codable, Sendable, Equatable {
                public var uid: UInt32
                public var level: AccessLevel
                public init(uid: UInt32, level: AccessLevel) { self.uid = uid; self.level = level }
                enum CodingKeys: String, CodingKey { case uid, level }
            }

            public init(
                version: String, protocol: Int, pid: Int32, uptimeSeconds: Double, startedAt: Int,
                configFile: String, socket: String, stateDirectory: String, clients: Int, commandsServed: Int,
                metrics: String?, you: Peer
            ) {
                self.version = version; self.protocol = `protocol`; self.pid = pid
                self.uptimeSeconds = uptimeSeconds; self.startedAt = startedAt; self.configFile = configFile
                self.socket = socket; self.stateDirectory = stateDirectory; self.clients = clients
                self.commandsServed = commandsServed; self.metrics = metrics; self.you = you
            }

            enum CodingKeys: String, CodingKey {
                case version, `protocol`, pid, socket, clients, metrics, you
                case uptimeSeconds = "uptime_seconds", startedAt = "started_at", configFile = "config_file"
                case stateDirectory = "state_dir", commandsServed = "commands_served"
            }

            public func encode(to encoder: Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(version, forKey: .version)
                try container.encode(`protocol`, forKey: .protocol)
                try container.encode(pid, forKey: .pid)
                try container.encode(uptimeSeconds, forKey: .uptimeSeconds)
                try container.encode(startedAt, forKey: .startedAt)
                try container.encode(configFile, forKey: .configFile)
                try container.encode(socket, forKey: .socket)
                try container.encode(stateDirectory, forKey: .stateDirectory)
                try container.encode(clients, forKey: .clients)
                try container.encode(commandsServed, forKey: .commandsServed)
                try container.encode(metrics, forKey: .metrics)  // null, where the synthesized encoding would omit it
                try container.encode(you, forKey: .you)
            }
        }
    }

    public enum ConfigReload: ControlMethod {
        public static let name = "config.reload"
        public static let level = AccessLevel.admin
        public static let summary = "Re-read the config file (as SIGHUP); a broken file is rejected and the running config kept"

        /// What a reload changed, and which of the changes wait for a restart.
        public struct Response: Codable, Sendable, Equatable {
            public var changed: [String]
            public var needsRestart: [String]

            public init(changed: [String] = [], needsRestart: [String] = []) {
                self.changed = changed; self.needsRestart = needsRestart
            }

            enum CodingKeys: String, CodingKey { case changed, needsRestart = "needs_restart" }
        }
    }

    public enum Shutdown: ControlMethod {
        public static let name = "shutdown"
        public static let level = AccessLevel.admin
        public static let summary = "Stop the daemon gracefully (as SIGTERM): restores every NIC change"

        public struct Response: Codable, Sendable, Equatable {
            public var stopping: Bool
            public init(stopping: Bool) { self.stopping = stopping }
            enum CodingKeys: String, CodingKey { case stopping }
        }
    }

    public enum TraceSubscribe: ControlMethod {
        public static let name = "trace.subscribe"
        public static let level = AccessLevel.read
        public static let summary = "Stream xdp:* tracepoint events of the interfaces Sluice owns as \"trace\" events"
        public static let arguments = [
            ArgumentSpec(Request.CodingKeys.iface, .string, "only this interface"),
            ArgumentSpec(Request.CodingKeys.events, .array, "event names (default: every xdp:* event the kernel has)"),
        ]

        public struct Request: Codable, Sendable, Equatable {
            public var iface: InterfaceName?
            public var events: [String]?
            public init(iface: InterfaceName? = nil, events: [String]? = nil) { self.iface = iface; self.events = events }
            public enum CodingKeys: String, CodingKey { case iface, events }
        }

        public struct Response: Codable, Sendable, Equatable {
            public var subscribed: String
            public var events: [String]
            public var interfaces: [InterfaceName]

            public init(subscribed: String, events: [String], interfaces: [InterfaceName]) {
                self.subscribed = subscribed; self.events = events; self.interfaces = interfaces
            }

            enum CodingKeys: String, CodingKey { case subscribed, events, interfaces }
        }
    }

    public enum TraceUnsubscribe: ControlMethod {
        public typealias Response = Unsubscribed
        public static let name = "trace.unsubscribe"
        public static let level = AccessLevel.read
        public static let summary = "Stop the trace stream on this connection"
    }

    public enum SteerDelete: ControlMethod {
        public static let name = "steer.del"
        public static let level = AccessLevel.admin
        public static let summary = "Delete the ntuple rule at a location (ethtool -N IF delete LOC)"
        public static let arguments = [
            ArgumentSpec(Request.CodingKeys.iface, .string, required: true, "interface name, e.g. eth0"),
            ArgumentSpec(Request.CodingKeys.location, UInt32.self, required: true, "rule slot"),
        ]

        public struct Request: Codable, Sendable, Equatable {
            public var iface: InterfaceName
            public var location: UInt32
            public init(iface: InterfaceName, location: UInt32) { self.iface = iface; self.location = location }
            public enum CodingKeys: String, CodingKey { case iface, location }
        }

        public struct Response: Codable, Sendable, Equatable {
            public var deleted: UInt32
            public var iface: InterfaceName
            public init(deleted: UInt32, iface: InterfaceName) { self.deleted = deleted; self.iface = iface }
            enum CodingKeys: String, CodingKey { case deleted, iface }
        }
    }
}

/// Counters of the control plane, for `status` and `stats.get`.
public struct ControlServerStatistics: Codable, Sendable, Equatable {
    public var clients = 0
    public var connectionsTotal = 0
    public var connectionsRejectedBusy = 0
    public var commandsServed = 0
    public var errorsByCode: [String: Int] = [:]

    public init() {}

    enum CodingKeys: String, CodingKey {
        case clients
        case connectionsTotal = "connections_total"
        case connectionsRejectedBusy = "connections_rejected_busy"
        case commandsServed = "commands_served"
        case errorsByCode = "errors_by_code"
    }
}
