import SluiceControl
import SluiceNIC
import SluicePluginHost

/// `steer.add|del|list`: ntuple rules. With `channel` instead of `queue`,
/// the driver plugin names the queue (on old mlx5, channel 2 of 4 is queue 6):
/// no other code computes queue ids.
extension Daemon {
    func registerSteeringCommands() {
        let nic = self.nic
        register("steer.add", .admin, "Add an ntuple rule (ethtool -N IF flow-type ...); dry_run shows the rule and the ethtool line", [
            InterfaceRequest.argument,
            ArgumentSpec("flow_type", .string, required: true, "tcp4, udp4, tcp6, udp6, ip4, ip6, ether"),
            ArgumentSpec("src_ip", .string, "source address"), ArgumentSpec("src_ip_mask", .string, "source address mask (bits that must match)"),
            ArgumentSpec("dst_ip", .string, "destination address"), ArgumentSpec("dst_ip_mask", .string, "destination address mask"),
            ArgumentSpec("src_port", .integer, "source port"), ArgumentSpec("src_port_mask", .integer, "source port mask"),
            ArgumentSpec("dst_port", .integer, "destination port"), ArgumentSpec("dst_port_mask", .integer, "destination port mask"),
            ArgumentSpec("src_mac", .string, "ether: source MAC"), ArgumentSpec("dst_mac", .string, "ether: destination MAC"),
            ArgumentSpec("ether_type", .integer, "ether: EtherType"),
            ArgumentSpec("vlan", .integer, "VLAN id (0-4095; with vlan_mask, the whole TCI)"),
            ArgumentSpec("vlan_mask", .integer, "VLAN TCI bits that must match (default 0x0fff: the VLAN id only, which mlx5 requires)"),
            ArgumentSpec("queue", .integer, "deliver to this queue id (as ethtool's action)"),
            ArgumentSpec("channel", .integer, "deliver to this channel: the driver plugin picks the queue id"),
            ArgumentSpec("drop", .boolean, "drop matching packets"),
            ArgumentSpec("plugin", .string, "force this driver plugin for the channel mapping (default: the interface's plugin in config, else the best score)"),
            ArgumentSpec("location", .integer, "rule slot (default: chosen as ethtool does)"),
            ArgumentSpec("dry_run", .boolean, "change nothing; show the rule and the ethtool line"),
        ]) { [weak self] arguments in
            let name = try Self.interfaceName(arguments)
            let requested = try Self.rule(from: arguments)
            let channel = try arguments.integer("channel", as: UInt32.self)
            let forced = try arguments.string("plugin") ?? self?.forcedPlugin(for: name)
            let dryRun = try arguments.bool("dry_run") ?? false
            guard let self else { throw ControlError.internal("daemon is shutting down") }
            let outcome = try await blocking {
                () throws -> (SteeringResult, (mapping: QueueMapping, source: MappingSource, mode: SocketMode?)?, String?) in
                var rule = requested
                var mapped: (mapping: QueueMapping, source: MappingSource, mode: SocketMode?)?
                if let channel {
                    // The running pipeline's mapping first: a rule must feed
                    // the queue its socket really reads (after a copy fallback too).
                    mapped = try self.channelMapping(name, channel: channel, forced: forced)
                    rule.action = .queue(mapped?.mapping.steerQueue ?? channel)
                }
                var warning: String?
                if case .queue(let queue) = rule.action, let problem = try self.unreadQueueProblem(name, queue: queue) {
                    guard dryRun else { throw ControlError.invalidArgument(problem) }
                    warning = problem
                }
                let added = try nic.addRule(name, rule, dryRun: dryRun)
                // A rule to a zero-copy-only queue a pipeline reads leaves with
                // that pipeline: afterwards it would drop the traffic.
                if !dryRun, case .queue(let queue) = added.rule.action {
                    self.pipelines.adoptRule(added.rule.location, toQueue: queue, on: name)
                }
                return (added, mapped, warning)
            }
            var result = try WireEncoding.encode(outcome.0)
            if let warning = outcome.2, case .object(var object) = result {
                object["warning"] = .string(warning)
                result = .object(object)
            }
            if case .object(var object) = result, let mapped = outcome.1 {
                object["channel"] = JSONValue(mapped.mapping.channel)
                object["queue"] = JSONValue(mapped.mapping.steerQueue)
                object["mapping"] = try WireEncoding.encode(mapped.mapping)
                object["mapping_source"] = .string(mapped.source.rawValue)
                if let mode = mapped.mode { object["socket_mode"] = .string(mode.rawValue) }
                result = .object(object)
            }
            return result
        }
        registry.register(Methods.SteerDelete.self) { request, _ in
            try await blocking { try nic.deleteRule(request.iface.rawValue, location: request.location) }
            return .init(deleted: request.location, iface: request.iface)
        }
        register("steer.list", .read, "The interface's ntuple rules (ethtool -n)", [InterfaceRequest.argument]) { arguments in
            let name = try Self.interfaceName(arguments)
            return try WireEncoding.encode(try await blocking { try nic.rules(name) })
        }
    }

    /// An ntuple rule from request arguments; exactly one of queue, channel
    /// (mapped later) and drop.
    static func rule(from arguments: Arguments) throws -> NtupleRule {
        let typeName = try arguments.requiredString("flow_type")
        guard let flowType = NtupleFlowType(rawValue: typeName) else {
            throw ControlError.invalidArgument(
                "flow_type \"\(typeName.prefix(32))\" is not one of \(NtupleFlowType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let queue = try arguments.integer("queue", as: UInt32.self)
        let channel = try arguments.integer("channel", as: UInt32.self)
        let drop = try arguments.bool("drop") ?? false
        let targets = [queue != nil, channel != nil, drop].filter { $0 }.count
        guard targets == 1 else {
            throw ControlError.invalidArgument("steer.add needs exactly one of queue, channel or drop: true")
        }
        var rule = NtupleRule(flowType: flowType, action: drop ? .drop : .queue(queue ?? channel ?? 0))
        rule.sourceAddress = try arguments.string("src_ip")
        rule.sourceAddressMask = try arguments.string("src_ip_mask")
        rule.destinationAddress = try arguments.string("dst_ip")
        rule.destinationAddressMask = try arguments.string("dst_ip_mask")
        rule.sourcePort = try arguments.integer("src_port", as: UInt16.self)
        rule.sourcePortMask = try arguments.integer("src_port_mask", as: UInt16.self)
        rule.destinationPort = try arguments.integer("dst_port", as: UInt16.self)
        rule.destinationPortMask = try arguments.integer("dst_port_mask", as: UInt16.self)
        rule.sourceMAC = try arguments.string("src_mac")
        rule.destinationMAC = try arguments.string("dst_mac")
        rule.etherType = try arguments.integer("ether_type", as: UInt16.self)
        rule.vlan = try arguments.integer("vlan", as: UInt16.self)
        rule.vlanMask = try arguments.integer("vlan_mask", as: UInt16.self)
        rule.location = try arguments.integer("location", as: UInt32.self)
        do {
            try rule.validate()
        } catch let error as NICError {
            throw error.controlError
        }
        return rule
    }
}
