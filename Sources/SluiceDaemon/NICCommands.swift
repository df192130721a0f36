import SluiceControl
import SluiceNIC
import SluicePluginHost

/// `nic.*`, `channels.*`, `features.*`, `rings.*`, `steer.*`, `flowhash.*`,
/// `rss.*`: ethtool over the control socket. Every NIC call blocks, so each
/// runs on the thread pool; every change is journaled by ``NICController``.
extension Daemon {
    func registerNICCommands() {
        let nic = self.nic
        let iface = InterfaceRequest.argument

        register("nic.list", .read, "Interfaces: index, driver, queues, link, XDP program") { _ in
            try WireEncoding.encode(["interfaces": try await blocking { nic.interfaces() }])
        }
        register("nic.show", .read, "One interface: driver, queues, channels, rings, features, Sluice's changes and outside changes",
                 [iface]) { arguments in
            let name = try Self.interfaceName(arguments)
            return try WireEncoding.encode(try await blocking { try nic.details(name) })
        }
        register("nic.stats", .read, "Driver statistics (ethtool -S), with per-queue counters where the names say so",
                 [iface]) { arguments in
            let name = try Self.interfaceName(arguments)
            return try WireEncoding.encode(try await blocking { try nic.statistics(name) })
        }
        register("nic.restore", .admin, "Undo every NIC change Sluice made (values changed since by others are left alone)") {
            _ in
            try WireEncoding.encode(try await blocking { nic.restoreAll() })
        }

        registry.register(Methods.ChannelsGet.self) { request, _ in
            try await blocking { try nic.channels(request.iface.rawValue) }
        }
        registry.register(Methods.ChannelsSet.self) { [weak self] request, _ in
            guard let self else { throw ControlError.internal("daemon is shutting down") }
            let name = request.iface.rawValue
            let change = ChannelsChange(rx: request.rx, tx: request.tx, other: request.other, combined: request.combined)
            guard !self.pipelines.runningInterfaces.contains(name) else {
                throw ControlError.busy("a pipeline is running on \(name); stop it first (sluicectl pipeline stop \(name))")
            }
            let plugins = self.plugins
            let forced = self.forcedPlugin(for: name)
            return try await blocking { () throws -> Served<Channels> in
                let current = try nic.channels(name).value
                let facts = try Self.liveFacts(for: name, nic: nic)
                let proposed = ChannelCounts(
                    rx: change.rx ?? current.rx, tx: change.tx ?? current.tx,
                    combined: change.combined ?? current.combined)
                let verdict = try plugins.checkChannelsChange(facts, proposed: proposed, forced: forced)
                guard verdict.allowed else { throw ControlError.busy(verdict.message) }
                return try nic.setChannels(name, change)
            }
        }

        register("features.get", .read, "Offload features (ethtool -k)", [iface]) { arguments in
            let name = try Self.interfaceName(arguments)
            return try WireEncoding.encode(try await blocking { try nic.features(name) })
        }
        register("features.set", .admin, "Turn features on or off (ethtool -K); kernel or ethtool names", [
            iface, ArgumentSpec("features", .object, required: true, "e.g. {\"ntuple\": true, \"gro\": false}"),
        ]) { arguments in
            let name = try Self.interfaceName(arguments)
            let object = try arguments.object("features") ?? [:]
            guard !object.isEmpty, object.count <= 256 else {
                throw ControlError.invalidArgument("features must name 1...256 features")
            }
            var wanted: [String: Bool] = [:]
            for (feature, value) in object {
                guard let on = value.boolValue else {
                    throw ControlError.invalidArgument("feature \(feature.prefix(64)) must be true or false, got \(value.typeName)")
                }
                guard feature.utf8.count <= 64 else { throw ControlError.invalidArgument("feature name too long") }
                wanted[feature] = on
            }
            let requested = wanted
            return try WireEncoding.encode(try await blocking { try nic.setFeatures(name, requested) })
        }

        registry.register(Methods.RingsGet.self) { request, _ in
            try await blocking { try nic.rings(request.iface.rawValue) }
        }
        registry.register(Methods.RingsSet.self) { request, _ in
            let change = RingsChange(rx: request.rx, rxMini: request.rxMini, rxJumbo: request.rxJumbo, tx: request.tx)
            return try await blocking { try nic.setRings(request.iface.rawValue, change) }
        }

        registerSteeringCommands()

        register("flowhash.get", .read, "Fields hashed for a flow type (ethtool -n IF rx-flow-hash TYPE)", [
            iface, ArgumentSpec("flow_type", .string, required: true, "tcp4, udp4, tcp6, udp6, ..."),
        ]) { arguments in
            let name = try Self.interfaceName(arguments)
            let type = try Self.hashFlowType(arguments)
            return try WireEncoding.encode(try await blocking { try nic.flowHash(name, flowType: type) })
        }
        register("flowhash.set", .admin, "Set the hashed fields (ethtool -N IF rx-flow-hash TYPE sdfn)", [
            iface, ArgumentSpec("flow_type", .string, required: true, "tcp4, udp4, tcp6, udp6, ..."),
            ArgumentSpec("fields", .string, required: true, "ethtool letters: m v t s d f n r"),
        ]) { arguments in
            let name = try Self.interfaceName(arguments)
            let type = try Self.hashFlowType(arguments)
            let fields: FlowHashFields
            do {
                fields = try FlowHashFields(letters: try arguments.requiredString("fields"))
            } catch let error as NICError {
                throw error.controlError
            }
            return try WireEncoding.encode(try await blocking { try nic.setFlowHash(name, flowType: type, fields: fields) })
        }

        register("rss.get", .read, "RSS indirection table and hash key (ethtool -x)", [iface]) { arguments in
            let name = try Self.interfaceName(arguments)
            return try WireEncoding.encode(try await blocking { try nic.rss(name) })
        }
        register("rss.set", .admin, "Set the RSS indirection table (ethtool -X): a whole table, or equal N", [
            iface, ArgumentSpec("table", .array, "one queue per entry, as long as the current table"),
            ArgumentSpec("equal", .integer, "spread over queues 0..N-1, as ethtool -X equal N"),
        ]) { arguments in
            let name = try Self.interfaceName(arguments)
            let table = try arguments.array("table", maxCount: 65_536)
            let equal = try arguments.integer("equal", as: UInt32.self, in: 1...65_535)
            guard (table == nil) != (equal == nil) else {
                throw ControlError.invalidArgument("rss.set takes either table or equal")
            }
            var explicit: [UInt32] = []
            if let table {
                explicit = try table.enumerated().map { index, value in
                    guard let queue = value.integer(as: UInt32.self) else {
                        throw ControlError.invalidArgument("table[\(index)] must be a queue number, got \(value.serialized().prefix(32))")
                    }
                    return queue
                }
            }
            let given = explicit
            let result = try await blocking { () throws -> Served<RSSConfiguration> in
                var entries = given
                if let equal {
                    let size = try nic.rss(name).value.indirectionTable.count
                    entries = (0..<size).map { UInt32($0) % equal }
                }
                return try nic.setRSS(name, indirectionTable: entries)
            }
            return try WireEncoding.encode(result)
        }
    }

    /// Registers a command whose handler needs only its arguments.
    func register(
        _ name: String, _ level: AccessLevel, _ summary: String, _ arguments: [ArgumentSpec] = [],
        _ handler: @escaping @Sendable (Arguments) async throws -> JSONValue
    ) {
        registry.register(CommandSpec(name, level: level, summary, arguments: arguments)) { _, arguments in
            try await handler(arguments)
        }
    }

    static func interfaceName(_ arguments: Arguments, key: String = "iface") throws -> String {
        let name = try arguments.requiredString(key)
        if let problem = InterfaceName.problem(name) { throw ControlError.invalidArgument("\(key): \(problem)") }
        return name
    }

    static func hashFlowType(_ arguments: Arguments) throws -> HashFlowType {
        let text = try arguments.requiredString("flow_type")
        guard let type = HashFlowType(rawValue: text) else {
            throw ControlError.invalidArgument(
                "flow_type \"\(text.prefix(32))\" is not one of \(HashFlowType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return type
    }

    /// The plugin `[[interface]] plugin = "…"` forces for `name`, if any.
    func forcedPlugin(for name: String) -> String? {
        config.interfaces.first { $0.name == name }?.plugin
    }
}
