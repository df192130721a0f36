import SluiceControl
import SluiceNIC
import SluicePluginHost

/// `steer.add|del|list`: ntuple rules. With `channel` instead of `queue`,
/// the driver plugin names the queue (on old mlx5, channel 2 of 4 is queue 6):
/// no other code computes queue ids.
extension Daemon {
    func registerSteeringCommands() {
        let nic = self.nic
        registry.register(Methods.SteerAdd.self) { [weak self] request, _ in
            guard let self else { throw ControlError.internal("daemon is shutting down") }
            let name = request.iface.rawValue
            let requested = try Self.rule(from: request)
            let forced = request.plugin ?? self.forcedPlugin(for: name)
            let dryRun = request.dryRun ?? false
            return try await blocking { () throws -> SteeringResult in
                var rule = requested
                var mapped: (mapping: QueueMapping, source: MappingSource, mode: SocketMode?)?
                if let channel = request.channel {
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
                var added = try nic.addRule(name, rule, dryRun: dryRun)
                // A rule to a zero-copy-only queue a pipeline reads leaves with
                // that pipeline: afterwards it would drop the traffic.
                if !dryRun, case .queue(let queue) = added.rule.action {
                    self.pipelines.adoptRule(added.rule.location, toQueue: queue, on: name)
                }
                added.warning = warning
                if let mapped {
                    added.channel = mapped.mapping.channel
                    added.queue = mapped.mapping.steerQueue
                    added.mapping = mapped.mapping
                    added.mappingSource = mapped.source
                    added.socketMode = mapped.mode
                }
                return added
            }
        }
        registry.register(Methods.SteerDelete.self) { request, _ in
            try await blocking { try nic.deleteRule(request.iface.rawValue, location: request.location) }
            return .init(deleted: request.location, iface: request.iface)
        }
        registry.register(Methods.SteerList.self) { request, _ in
            try await blocking { try nic.rules(request.iface.rawValue) }
        }
    }

    /// An ntuple rule from request arguments; exactly one of queue, channel
    /// (mapped later) and drop.
    static func rule(from request: Methods.SteerAdd.Request) throws -> NtupleRule {
        guard let flowType = NtupleFlowType(rawValue: request.flowType) else {
            throw ControlError.invalidArgument(
                "flow_type \"\(request.flowType.prefix(32))\" is not one of \(NtupleFlowType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let drop = request.drop ?? false
        let targets = [request.queue != nil, request.channel != nil, drop].filter { $0 }.count
        guard targets == 1 else {
            throw ControlError.invalidArgument("steer.add needs exactly one of queue, channel or drop: true")
        }
        let rule = NtupleRule(
            flowType: flowType, sourceAddress: request.sourceAddress, sourceAddressMask: request.sourceAddressMask,
            destinationAddress: request.destinationAddress, destinationAddressMask: request.destinationAddressMask,
            sourcePort: request.sourcePort, sourcePortMask: request.sourcePortMask,
            destinationPort: request.destinationPort, destinationPortMask: request.destinationPortMask,
            sourceMAC: request.sourceMAC, destinationMAC: request.destinationMAC, etherType: request.etherType,
            vlan: request.vlan, vlanMask: request.vlanMask,
            action: drop ? .drop : .queue(request.queue ?? request.channel ?? 0), location: request.location)
        do {
            try rule.validate()
        } catch let error as NICError {
            throw error.controlError
        }
        return rule
    }
}
