import SluiceControl
import SluiceNIC
import SluicePluginHost
import SluiceSystem

/// `plugins.list|reload|explain`.
extension Daemon {
    func registerPluginCommands() {
        let plugins = self.plugins
        let nic = self.nic
        let directory = config.plugins.directory
        registry.register(Methods.PluginsList.self) { _, _ in
            // The host's lock is held across dlopen during a reload: wait for it off the cooperative pool.
            PluginListing(directory: directory, plugins: try await blocking { plugins.list() })
        }
        registry.register(Methods.PluginsReload.self) { _, _ in
            let records = try await blocking { () throws -> [PluginRecord] in
                do { return try plugins.reload() } catch let error as PluginHostError { throw error.controlError }
            }
            return PluginListing(directory: directory, plugins: records)
        }
        registry.register(Methods.PluginsExplain.self) { [weak self] request, _ in
            let forced = request.plugin
            let channel = request.channel
            guard let iface = request.iface else {
                let facts = DriverFacts.synthetic(
                    driver: request.driver ?? "", kernelRelease: request.kernelRelease ?? KernelFiles.kernelRelease(),
                    channels: request.channels ?? 0, sysfsRxQueues: request.sysfsRxQueues ?? 0)
                guard request.channels != nil else {
                    throw ControlError.invalidArgument("plugins.explain needs the argument \"channels\"")
                }
                guard !facts.driver.isEmpty else {
                    throw ControlError.invalidArgument("plugins.explain needs iface, or driver and channels for a what-if")
                }
                return .init(try await blocking { try plugins.explain(facts, channels: channel.map { [$0] }, forced: forced) },
                             source: .whatIf)
            }
            let whatIf: [(String, Bool)] = [
                ("driver", request.driver != nil), ("kernel_release", request.kernelRelease != nil),
                ("channels", request.channels != nil), ("sysfs_rx_queues", request.sysfsRxQueues != nil),
            ]
            if let extra = whatIf.first(where: \.1)?.0 {
                throw ControlError.invalidArgument("\(extra) is for what-if explanations; leave out iface, or leave out \(extra)")
            }
            let name = iface.rawValue
            // While a pipeline runs, it answers: the facts its sockets were
            // bound with and, per channel, the mapping of the mode in effect.
            // Naming another plugin asks what it would say about the live
            // facts: an answer no socket uses, marked live_facts.
            let lease = self?.pipelines.lease(for: name)
            if let lease, forced == nil || forced == lease.plugin, channel.map({ lease.channel($0) != nil }) ?? true {
                // Without a channel: the channels the pipeline reads.
                let channels = channel.map { [$0] } ?? lease.channels.map(\.mapping.channel)
                var leased = try await blocking { () throws -> PluginExplanation in
                    try plugins.explain(lease.facts, channels: channels, forced: lease.plugin)
                }
                var modes: [String: SocketMode] = [:]
                leased.mappings = leased.mappings.map { answer in
                    guard let held = lease.channel(answer.channel) else { return answer }
                    modes[String(held.mapping.channel)] = held.mode
                    return held.mapping
                }
                return .init(leased, source: .pipeline, socketModes: modes)
            }
            // A channel none of the running pipeline's sockets reads is a
            // regular queue, answered as steer.add maps it.
            let chosen = forced ?? lease?.plugin ?? self?.forcedPlugin(for: name)
            let unboundChannel = lease != nil && chosen == lease?.plugin
            guard let daemon = self else { throw ControlError.internal("daemon is shutting down") }
            return .init(try await blocking { () throws -> PluginExplanation in
                let facts = unboundChannel ? try daemon.regularQueueFacts(name) : try Self.liveFacts(for: name, nic: nic)
                return try plugins.explain(facts, channels: channel.map { [$0] }, forced: chosen)
            }, source: .liveFacts)
        }
    }
}
