import SluiceDataPath
import SluicePluginHost

/// The decisions that keep a socket, its XSKMAP key and the rules feeding it
/// on one queue through a driver's life cycle, as pure functions over facts
/// and plugin answers: PipelineManager and the steering commands run them on
/// live state, and the life-cycle tests run them over a model of each driver.
enum MappingLifeCycle {
    /// The two questions a pipeline start asks the plugin: the facts for a
    /// zero-copy bind and for a copy-mode one, in the XDP mode the program
    /// will run in. With bind mode `copy` (or XDP in skb mode, where sockets
    /// bind in copy mode) both are the copy-mode question.
    static func questions(
        live: DriverFacts, bindMode: XSKBindMode, attachMode: XDPAttachMode
    ) -> (zeroCopy: DriverFacts, copy: DriverFacts) {
        var zeroCopy = live
        zeroCopy.xdpAttached = true
        zeroCopy.xdpMode = attachMode == .skb ? .skb : .native
        zeroCopy.zeroCopyRequested = bindMode != .copy && attachMode != .skb
        var copy = zeroCopy
        copy.zeroCopyRequested = false
        return (zeroCopy, copy)
    }

    /// The plugin's two answers for `channels`, one per mode a socket can
    /// end up in: an `auto` bind the driver refuses in zero-copy takes the
    /// copy-mode answer, for its queue, its XSKMAP key and whatever is
    /// steered to it. Without zero-copy both are the copy-mode answer.
    static func answers(
        for channels: [UInt32], from lease: PluginLease, to questions: (zeroCopy: DriverFacts, copy: DriverFacts)
    ) throws(PluginHostError) -> (zeroCopy: [QueueMapping], copy: [QueueMapping]) {
        let zeroCopy = try lease.mapChannels(channels, facts: questions.zeroCopy)
        return (zeroCopy, questions.zeroCopy.zeroCopyRequested ? try lease.mapChannels(channels, facts: questions.copy) : zeroCopy)
    }

    /// One plan per channel from the plugin's two answers.
    static func plans(zeroCopy: [QueueMapping], copy: [QueueMapping]) -> [ChannelPlan] {
        zip(zeroCopy, copy).map { ChannelPlan(zeroCopy: binding($0), copy: binding($1)) }
    }

    static func binding(_ mapping: QueueMapping) -> ChannelBinding {
        ChannelBinding(channel: Int(mapping.channel), bindQueue: mapping.bindQueue, xskmapKey: mapping.xskmapKey)
    }

    /// The mapping in effect once the sockets are bound: per socket, the
    /// answer for the mode it really bound in.
    static func inEffect(
        zeroCopy: [QueueMapping], copy: [QueueMapping], socketsBoundZeroCopy: [Bool],
        attachMode: XDPAttachMode
    ) -> [LeasedChannel] {
        zip(socketsBoundZeroCopy, zip(zeroCopy, copy)).map { isZeroCopy, answers in
            LeasedChannel(
                mapping: isZeroCopy ? answers.0 : answers.1,
                mode: isZeroCopy ? .zeroCopy : (attachMode == .skb ? .skb : .copy))
        }
    }

    /// Why a rule steering to `queue` would make the NIC drop what it
    /// matches, or nil. A queue at or above the receive channels (as the
    /// plugin counts them) exists only as a zero-copy AF_XDP queue (mlx5
    /// before Linux 6.1: channels + i); with no socket reading it, the NIC
    /// drops the traffic — before a pipeline starts, after it stops, after a
    /// copy fallback.
    static func unreadQueueProblem(
        interface: String, queue: UInt32, receiveChannels: UInt32, readQueues: Set<UInt32>
    ) -> String? {
        guard isUnreadZeroCopyQueue(queue, receiveChannels: receiveChannels, readQueues: readQueues) else { return nil }
        return "queue \(queue) of \(interface) is beyond its \(receiveChannels) receive channels: only a zero-copy AF_XDP socket's queue"
            + " can be there (as on mlx5 before Linux 6.1), and no socket is bound to it, so the NIC would drop what"
            + " the rule matches; start the pipeline that reads it first, or steer to a channel"
    }

    static func isUnreadZeroCopyQueue(_ queue: UInt32, receiveChannels: UInt32, readQueues: Set<UInt32>) -> Bool {
        receiveChannels > 0 && queue >= receiveChannels && !readQueues.contains(queue)
    }

    /// Whether a rule to `queue` leaves with the pipeline holding `lease`:
    /// it feeds a zero-copy-only queue one of its sockets reads, which
    /// nothing reads once the pipeline stops.
    static func ruleLeavesWithPipeline(queue: UInt32, lease: InterfaceLease) -> Bool {
        queue >= lease.receiveChannels && lease.channels.contains { $0.mapping.bindQueue == queue }
    }

    /// What a pipeline does about rx queues its XDP attach added (virtio_net
    /// adds a queue pair per CPU for XDP_TX when they fit in its maximum,
    /// and the host delivers to the added rx queues too).
    enum AddedQueues: Equatable {
        /// Nothing was added, or every added queue is read already.
        case none
        /// Bind these as more channels of the same plan (identity: they are
        /// ordinary rx queues).
        case bind([UInt32])
        /// Nobody reads these; the warning says why.
        case unread([UInt32], why: String)
    }

    /// The queues `before..<after` that no socket of the pipeline reads are
    /// bound too when the pipeline takes every channel by default and the
    /// plugin maps its channels as identity; otherwise they stay unread, and why.
    static func addedQueues(
        before: Int, after: Int, boundQueues: Set<UInt32>, configuredChannels: [UInt32]?, identity: Bool
    ) -> AddedQueues {
        guard after > before else { return .none }
        let added = (UInt32(before)..<UInt32(after)).filter { !boundQueues.contains($0) }
        guard !added.isEmpty else { return .none }
        if let configuredChannels {
            return .unread(added, why: "the configuration binds channels \(configuredChannels) only (add them to `channels`, or leave `channels` out to take every queue)")
        }
        guard identity else {
            return .unread(added, why: "the driver plugin's mapping is not identity, so the added queues have no channel of their own")
        }
        return .bind(added)
    }

    /// Whether a channel notification is the running pipeline's own XDP
    /// attach growing the queues rather than a change under it: the receive
    /// channels notified are the rx queues the attach left (`before` <
    /// `after`), and sysfs still shows them. virtio_net sends no notification
    /// at attach or detach; a driver that did would otherwise loop: rebind →
    /// detach → queues shrink → attach → queues grow → notification → rebind.
    static func isOwnAttachGrowth(notifiedReceiveChannels: UInt32?, before: Int, after: Int, liveRxQueues: Int?) -> Bool {
        guard after > before, let notified = notifiedReceiveChannels else { return false }
        return Int(notified) == after && liveRxQueues == after
    }

    /// What a periodic check makes of a running pipeline's rx queues.
    enum UnnoticedQueueChange: Equatable {
        /// sysfs shows the queues the pipeline bound (or cannot be read:
        /// the interface's removal stops the pipeline on its own).
        case none
        /// They differ for the first time: a channel notification may be on
        /// its way, and its rebind would start a new pipeline.
        case suspected
        /// They differed at the last check too: the notification was lost.
        case rebind
    }

    /// Whether `liveRxQueues` (sysfs now) against `boundRxQueues` (after the
    /// pipeline's XDP attach) means the channels changed unnoticed.
    static func unnoticedQueueChange(liveRxQueues: Int?, boundRxQueues: Int, suspectedAtLastCheck: Bool) -> UnnoticedQueueChange {
        guard let live = liveRxQueues, live != boundRxQueues else { return .none }
        return suspectedAtLastCheck ? .rebind : .suspected
    }

    /// The warning for queues the attach added that no socket reads.
    static func unreadAddedQueuesWarning(interface: String, driver: String, before: Int, after: Int, queues: [UInt32], why: String) -> String {
        "\(driver) added rx queues at XDP attach on \(interface) (\(before) → \(after)); queues \(queues) receive traffic"
            + " that no socket reads (the XDP program passes it to the kernel): \(why)"
    }
}
