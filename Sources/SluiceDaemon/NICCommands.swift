import SluiceControl
import SluiceNIC
import SluicePluginHost

/// `nic.*`, `channels.*`, `features.*`, `rings.*`, `steer.*`, `flowhash.*`,
/// `rss.*`: ethtool over the control socket. Every NIC call blocks, so each
/// runs on the thread pool; every change is journaled by ``NICController``.
extension Daemon {
    func registerNICCommands() {
        let nic = self.nic

        registry.register(Methods.NICList.self) { _, _ in .init(interfaces: try await blocking { nic.interfaces() }) }
        registry.register(Methods.NICShow.self) { request, _ in
            try await blocking { try nic.details(request.iface.rawValue) }
        }
        registry.register(Methods.NICStatistics.self) { request, _ in
            try await blocking { try nic.statistics(request.iface.rawValue) }
        }
        registry.register(Methods.NICRestore.self) { _, _ in try await blocking { nic.restoreAll() } }

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

        registry.register(Methods.FeaturesGet.self) { request, _ in
            try await blocking { try nic.features(request.iface.rawValue) }
        }
        registry.register(Methods.FeaturesSet.self) { request, _ in
            guard !request.features.isEmpty, request.features.count <= 256 else {
                throw ControlError.invalidArgument("features must name 1...256 features")
            }
            guard request.features.keys.allSatisfy({ $0.utf8.count <= 64 }) else {
                throw ControlError.invalidArgument("feature name too long")
            }
            return try await blocking { try nic.setFeatures(request.iface.rawValue, request.features) }
        }

        registry.register(Methods.RingsGet.self) { request, _ in
            try await blocking { try nic.rings(request.iface.rawValue) }
        }
        registry.register(Methods.RingsSet.self) { request, _ in
            let change = RingsChange(rx: request.rx, rxMini: request.rxMini, rxJumbo: request.rxJumbo, tx: request.tx)
            return try await blocking { try nic.setRings(request.iface.rawValue, change) }
        }

        registerSteeringCommands()

        registry.register(Methods.FlowHashGet.self) { request, _ in
            let served = try await blocking { try nic.flowHash(request.iface.rawValue, flowType: request.flowType) }
            return Served(served.value.letters, backend: served.backend)
        }
        registry.register(Methods.FlowHashSet.self) { request, _ in
            let fields: FlowHashFields
            do {
                fields = try FlowHashFields(letters: request.fields)
            } catch let error as NICError {
                throw error.controlError
            }
            let served = try await blocking {
                try nic.setFlowHash(request.iface.rawValue, flowType: request.flowType, fields: fields)
            }
            return Served(served.value.letters, backend: served.backend)
        }

        registry.register(Methods.RSSGet.self) { request, _ in
            try await blocking { try nic.rss(request.iface.rawValue) }
        }
        registry.register(Methods.RSSSet.self) { request, _ in
            let name = request.iface.rawValue
            guard (request.table == nil) != (request.equal == nil) else {
                throw ControlError.invalidArgument("rss.set takes either table or equal")
            }
            if let table = request.table, table.count > 65_536 {
                throw ControlError.invalidArgument("table has \(table.count) elements, at most 65536 allowed")
            }
            return try await blocking { () throws -> Served<RSSConfiguration> in
                var entries = request.table ?? []
                if let equal = request.equal {
                    entries = RSSConfiguration.equalTable(size: try nic.rss(name).value.indirectionTable.count, queues: equal)
                }
                return try nic.setRSS(name, indirectionTable: entries)
            }
        }
    }

    /// The plugin `[[interface]] plugin = "…"` forces for `name`, if any.
    func forcedPlugin(for name: String) -> String? {
        config.interfaces.first { $0.name == name }?.plugin
    }
}
