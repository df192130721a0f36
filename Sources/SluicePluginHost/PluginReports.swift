import CSluiceDriverABI
import SluiceProtocol

extension Preparation {
    /// What a plugin without a prepare hook requires: nothing.
    public static let none = Preparation(sluice_requirements(), message: "")

    init(_ req: sluice_requirements, message: String) {
        var rest = req.flags
        func take(_ flag: UInt64) -> Bool {
            defer { rest &= ~flag }
            return req.flags & flag != 0
        }
        // In this order: each take clears its bit, and what is left is unknown.
        let needsNtuple = take(SLUICE_REQ_NTUPLE_ON), steeringRequired = take(SLUICE_REQ_STEERING_REQUIRED)
        let excludeFromRSS = take(SLUICE_REQ_EXCLUDE_FROM_RSS), combinedChannels = take(SLUICE_REQ_COMBINED_CHANNELS)
        let copyModeOnly = take(SLUICE_REQ_COPY_MODE_ONLY)
        self.init(
            needsNtuple: needsNtuple, steeringRequired: steeringRequired, excludeFromRSS: excludeFromRSS,
            combinedChannels: combinedChannels, copyModeOnly: copyModeOnly, unknownFlags: rest,
            minXskmapEntries: req.min_xskmap_entries, receiveChannels: req.rx_channels > 0 ? req.rx_channels : nil,
            message: message)
    }

    /// The channels a pipeline on `facts` maps when config names none: every
    /// receive channel the interface has.
    public func defaultChannels(for facts: DriverFacts) -> [UInt32] {
        let known = receiveChannels ?? facts.channels.receiveChannels
        return Array(0..<(known > 0 ? known : facts.sysfsRxQueues))
    }
}

/// The plugin's answer to a proposed channel change.
public struct ChannelChangeVerdict: Codable, Sendable, Equatable {
    public var allowed: Bool
    public var message: String

    public init(allowed: Bool, message: String) {
        self.allowed = allowed
        self.message = message
    }
}

