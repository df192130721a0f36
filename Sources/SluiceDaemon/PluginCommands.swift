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
        register("plugins.explain", .read, """
            Which plugin handles an interface and why, its facts, and per channel the bind queue, steer queue \
            and XSKMAP key. Without iface: what-if for synthetic facts (driver, kernel_release, channels, sysfs_rx_queues)
            """, [
                ArgumentSpec("iface", .string, "interface to explain"),
                ArgumentSpec("driver", .string, "what-if: driver name, e.g. mlx5_core"),
                ArgumentSpec("kernel_release", .string, "what-if: kernel release, e.g. 5.15.0-91-generic"),
                ArgumentSpec("channels", .integer, "what-if: combined channel count"),
                ArgumentSpec("sysfs_rx_queues", .integer, "what-if: rx-* entries in sysfs (0: unknown)"),
                ArgumentSpec("channel", .integer, "explain only this channel"),
                ArgumentSpec("plugin", .string, "force this plugin (default: the interface's plugin in config, else the best score)"),
            ]
        ) { [weak self] arguments in
            let whatIfKeys = ["driver", "kernel_release", "channels", "sysfs_rx_queues"]
            let forced = try arguments.string("plugin")
            let channel = try arguments.integer("channel", as: UInt32.self)
            let explanation: PluginExplanation
            if arguments.has("iface") {
                if let extra = whatIfKeys.first(where: arguments.has) {
                    throw ControlError.invalidArgument("\(extra) is for what-if explanations; leave out iface, or leave out \(extra)")
                }
                let name = try Self.interfaceName(arguments)
                // While a pipeline runs, it answers: the facts its sockets were
                // bound with and, per channel, the mapping of the mode in effect.
                // Naming another plugin asks what it would say about the live
                // facts: an answer no socket uses, marked live_facts.
                if let lease = self?.pipelines.lease(for: name), forced == nil || forced == lease.plugin {
                    // Without a channel: the channels the pipeline reads.
                    let channels = channel.map { [$0] } ?? lease.channels.map(\.mapping.channel)
                    var leased = try await blocking { () throws -> PluginExplanation in
                        try plugins.explain(lease.facts, channels: channels, forced: lease.plugin)
                    }
                    var modes: [String: JSONValue] = [:]
                    leased.mappings = leased.mappings.map { answer in
                        guard let held = lease.channel(answer.channel) else { return answer }
                        modes[String(held.mapping.channel)] = .string(held.mode.rawValue)
                        return held.mapping
                    }
                    guard case .object(var object) = try WireEncoding.encode(leased) else { return .null }
                    object["source"] = .string(MappingSource.pipeline.rawValue)
                    object["socket_modes"] = .object(modes)
                    return .object(object)
                }
                let chosen = forced ?? self?.forcedPlugin(for: name)
                explanation = try await blocking { () throws -> PluginExplanation in
                    let facts = try Self.liveFacts(for: name, nic: nic)
                    return try plugins.explain(facts, channels: channel.map { [$0] }, forced: chosen)
                }
            } else {
                let facts = DriverFacts.synthetic(
                    driver: try arguments.string("driver") ?? "",
                    kernelRelease: try arguments.string("kernel_release") ?? KernelFiles.kernelRelease(),
                    channels: try arguments.requiredInteger("channels", as: UInt32.self, in: 1...65_536),
                    sysfsRxQueues: try arguments.integer("sysfs_rx_queues", as: UInt32.self, in: 0...65_536) ?? 0)
                guard !facts.driver.isEmpty else {
                    throw ControlError.invalidArgument("plugins.explain needs iface, or driver and channels for a what-if")
                }
                explanation = try await blocking { () throws -> PluginExplanation in
                    try plugins.explain(facts, channels: channel.map { [$0] }, forced: forced)
                }
            }
            guard case .object(var object) = try WireEncoding.encode(explanation) else { return .null }
            object["source"] = .string((arguments.has("iface") ? MappingSource.liveFacts : .whatIf).rawValue)
            return .object(object)
        }
    }
}
