import Logging
import SluiceDataPath
import SluicePluginHost
import SluiceTestSupport
import XCTest

@testable import SluiceDaemon

/// What ethtool, sysfs and sock_diag show for one device in each state of
/// its life, and whether its driver binds zero-copy: enough to drive the
/// daemon's mapping decisions (MappingLifeCycle) and the real plugins through
/// a whole life cycle without the hardware.
private struct DriverModel {
    var name: String
    var driver: String
    var kernel: String
    /// Receive channels the device really has.
    var channels: UInt32
    /// Combined channels (mlx5, ice, virtio_net) rather than rx/tx (veth).
    var combined = true
    var sysfsRx: UInt32
    var sysfsTx: UInt32
    /// ethtool reports twice the channels while zero-copy sockets are bound (mlx5 before 6.1).
    var doublesWhileZeroCopy = false
    var zeroCopyBinds: Bool

    func facts(zeroCopySockets: UInt32 = 0, xdp: XDPMode = .none) -> DriverFacts {
        let factor: UInt32 = doublesWhileZeroCopy && zeroCopySockets > 0 ? 2 : 1
        let reported = channels * factor
        return DriverFacts(
            interface: "eth7", driver: driver, kernelRelease: kernel,
            channels: combined ? ChannelCounts(combined: reported) : ChannelCounts(rx: reported, tx: reported),
            maxChannels: combined ? ChannelCounts(combined: 63 * factor) : ChannelCounts(rx: reported, tx: reported),
            sysfsRxQueues: sysfsRx, sysfsTxQueues: sysfsTx, xdpAttached: xdp != .none, xdpMode: xdp,
            zeroCopySockets: zeroCopySockets)
    }
}

/// One row: a driver, how the pipeline is configured, and what must hold.
private struct LifeCycleCase {
    var model: DriverModel
    var bindMode: XSKBindMode = .auto
    var attachMode: XDPAttachMode = .native
    var plugin: String
    /// Bind queue = steer queue = XSKMAP key of each channel while running.
    var queues: [UInt32]
    var zeroCopy: Bool
    /// A channel change proposed while running is allowed.
    var channelChangeAllowed: Bool
    /// The steer queues exist only as zero-copy queues (rules to them drop traffic once nobody reads them).
    var zeroCopyOnlyQueues: Bool
}

final class MappingLifeCycleTests: XCTestCase {
    private var directory: PluginDirectory!
    private var host: PluginHost!

    override func setUpWithError() throws {
        directory = try PluginDirectory.withShippedPlugins()
        host = PluginHost(directory: directory.path, logger: Logger(label: "test.lifecycle"))
    }

    override func tearDown() {
        directory?.remove()
    }

    private static let oldMlx5 = DriverModel(
        name: "mlx5 before 6.1", driver: "mlx5_core", kernel: "5.15.0-91-generic", channels: 4,
        sysfsRx: 8, sysfsTx: 4, doublesWhileZeroCopy: true, zeroCopyBinds: true)
    private static let newMlx5 = DriverModel(
        name: "mlx5 6.1+", driver: "mlx5_core", kernel: "6.1.0-27-amd64", channels: 4, sysfsRx: 4, sysfsTx: 4,
        zeroCopyBinds: true)
    private static let ice = DriverModel(
        name: "ice", driver: "ice", kernel: "6.1.0-27-amd64", channels: 4, sysfsRx: 4, sysfsTx: 4, zeroCopyBinds: true)
    /// Under QEMU virtio_net refuses zero-copy (EOPNOTSUPP): `auto` falls back.
    private static let virtio = DriverModel(
        name: "virtio_net", driver: "virtio_net", kernel: "6.1.0-27-amd64", channels: 2, sysfsRx: 2, sysfsTx: 2,
        zeroCopyBinds: false)
    private static let veth = DriverModel(
        name: "veth", driver: "veth", kernel: "6.18.0", channels: 2, combined: false, sysfsRx: 2, sysfsTx: 2,
        zeroCopyBinds: false)

    private static let cases: [LifeCycleCase] = [
        LifeCycleCase(model: oldMlx5, plugin: "mlx5", queues: [4, 5, 6, 7], zeroCopy: true,
                      channelChangeAllowed: false, zeroCopyOnlyQueues: true),
        // The seed's trap the other way round: zero-copy refused, copy mode reads the regular queues.
        LifeCycleCase(model: { var m = oldMlx5; m.name += ", zero-copy refused"; m.zeroCopyBinds = false; return m }(),
                      plugin: "mlx5", queues: [0, 1, 2, 3], zeroCopy: false,
                      channelChangeAllowed: true, zeroCopyOnlyQueues: false),
        LifeCycleCase(model: oldMlx5, attachMode: .skb, plugin: "mlx5", queues: [0, 1, 2, 3], zeroCopy: false,
                      channelChangeAllowed: true, zeroCopyOnlyQueues: false),
        LifeCycleCase(model: oldMlx5, bindMode: .copy, plugin: "mlx5", queues: [0, 1, 2, 3], zeroCopy: false,
                      channelChangeAllowed: true, zeroCopyOnlyQueues: false),
        LifeCycleCase(model: newMlx5, plugin: "mlx5", queues: [0, 1, 2, 3], zeroCopy: true,
                      channelChangeAllowed: true, zeroCopyOnlyQueues: false),
        LifeCycleCase(model: ice, plugin: "generic", queues: [0, 1, 2, 3], zeroCopy: true,
                      channelChangeAllowed: true, zeroCopyOnlyQueues: false),
        LifeCycleCase(model: virtio, plugin: "generic", queues: [0, 1], zeroCopy: false,
                      channelChangeAllowed: true, zeroCopyOnlyQueues: false),
        LifeCycleCase(model: veth, plugin: "generic", queues: [0, 1], zeroCopy: false,
                      channelChangeAllowed: true, zeroCopyOnlyQueues: false),
    ]

    /// Configure, start (zero-copy or its fallback), run (the live facts
    /// change: old mlx5 doubles its counts), add rules, propose a channel
    /// change, stop, a crash and the start after it, a channel change and the
    /// bind after it — and at every step the socket's queue, its XSKMAP key,
    /// the rules' action and the plugin's answer for the live facts agree.
    func testEveryDriverKeepsOneMappingThroughItsLifeCycle() throws {
        for row in Self.cases {
            let label = "\(row.model.name), bind \(row.bindMode.rawValue), XDP \(row.attachMode.rawValue)"
            try runLifeCycle(row, label)
        }
    }

    private func runLifeCycle(_ row: LifeCycleCase, _ label: String) throws {
        // Configured: live facts, no program, no sockets.
        let questions = MappingLifeCycle.questions(
            live: row.model.facts(), bindMode: row.bindMode, attachMode: row.attachMode)
        XCTAssertTrue(questions.zeroCopy.xdpAttached, label)
        XCTAssertEqual(questions.zeroCopy.xdpMode, row.attachMode == .skb ? .skb : .native, label)
        XCTAssertEqual(questions.zeroCopy.zeroCopyRequested, row.bindMode != .copy && row.attachMode != .skb, label)
        XCTAssertFalse(questions.copy.zeroCopyRequested, label)
        XCTAssertEqual(questions.zeroCopy.zeroCopySockets, 0, label)

        // Start: the plugin is asked for both modes; each socket takes the
        // answer for the mode it bound in.
        let lease = try host.acquire(questions.zeroCopy)
        defer { lease.release() }
        XCTAssertEqual(lease.plugin.name, row.plugin, label)
        let preparation = try lease.prepare(questions.zeroCopy)
        XCTAssertFalse(preparation.needsNtuple, "\(label): no plugin asks for rx-ntuple-filter")
        let channels = preparation.defaultChannels(for: questions.zeroCopy)
        XCTAssertEqual(channels, Array(0..<row.model.channels), label)
        let zeroCopyAnswers = try lease.mapChannels(channels, facts: questions.zeroCopy)
        let copyAnswers = try lease.mapChannels(channels, facts: questions.copy)
        let triesZeroCopy = questions.zeroCopy.zeroCopyRequested && !preparation.copyModeOnly
        let boundZeroCopy = triesZeroCopy && row.model.zeroCopyBinds
        let inEffect = MappingLifeCycle.inEffect(
            zeroCopy: zeroCopyAnswers, copy: copyAnswers,
            socketsBoundZeroCopy: Array(repeating: boundZeroCopy, count: channels.count), attachMode: row.attachMode)
        XCTAssertEqual(boundZeroCopy, row.zeroCopy, label)
        XCTAssertEqual(inEffect.map(\.mapping.bindQueue), row.queues, "\(label): bind queues")
        XCTAssertEqual(inEffect.map(\.mapping.xskmapKey), row.queues, "\(label): XSKMAP keys")
        XCTAssertEqual(inEffect.map(\.mapping.steerQueue), row.queues, "\(label): steer queues")
        XCTAssertEqual(Set(inEffect.map(\.mode)), [boundZeroCopy ? .zeroCopy : (row.attachMode == .skb ? .skb : .copy)], label)
        let plans = MappingLifeCycle.plans(zeroCopy: zeroCopyAnswers, copy: copyAnswers)
        XCTAssertEqual(plans.map { $0.binding(zeroCopy: boundZeroCopy).bindQueue }, row.queues, "\(label): the data path binds these")

        // Running: the live facts are what the driver shows now (old mlx5
        // doubles its counts). Asked again for the mode in effect, the plugin
        // gives the same answer: the map the sockets use is not stale.
        let sockets = boundZeroCopy ? UInt32(channels.count) : 0
        var live = row.model.facts(zeroCopySockets: sockets, xdp: row.attachMode == .skb ? .skb : .native)
        live.zeroCopyRequested = boundZeroCopy
        XCTAssertEqual(
            try lease.mapChannels(channels, facts: live).map(\.bindQueue), row.queues,
            "\(label): the plugin's answer for the live facts (\(live.channels)) while running")
        let held = InterfaceLease(
            interface: "eth7", plugin: lease.plugin.name, facts: questions.zeroCopy,
            receiveChannels: preparation.receiveChannels ?? questions.zeroCopy.channels.receiveChannels,
            channels: inEffect)
        XCTAssertEqual(held.receiveChannels, row.model.channels, label)

        // Rules: steer.add with a channel uses the lease; its queue is read now.
        let read = Set(inEffect.map(\.mapping.bindQueue))
        for leased in held.channels {
            let queue = try XCTUnwrap(held.channel(leased.mapping.channel)).mapping.steerQueue
            XCTAssertNil(MappingLifeCycle.unreadQueueProblem(
                interface: "eth7", queue: queue, receiveChannels: held.receiveChannels, readQueues: read), label)
            XCTAssertEqual(MappingLifeCycle.ruleLeavesWithPipeline(queue: queue, lease: held), row.zeroCopyOnlyQueues, label)
        }

        // A channel change while the sockets are bound.
        var proposed = live.channels
        if row.model.combined { proposed.combined = row.model.channels + 1 } else { proposed.rx = row.model.channels + 1 }
        XCTAssertEqual(
            try lease.checkChannelsChange(live, proposed: proposed).allowed, row.channelChangeAllowed,
            "\(label): channel change to \(proposed) while running")

        // Stopped: nobody reads the queues any more. A rule to a zero-copy
        // queue would drop traffic; the regular queues stay fine.
        for queue in row.queues {
            let problem = MappingLifeCycle.unreadQueueProblem(
                interface: "eth7", queue: queue, receiveChannels: held.receiveChannels, readQueues: [])
            XCTAssertEqual(problem != nil, row.zeroCopyOnlyQueues, "\(label): a rule to queue \(queue) after stop")
        }
        // And a channel no socket reads is its regular queue.
        var stopped = row.model.facts()
        stopped.zeroCopyRequested = false
        XCTAssertEqual(
            try host.explain(stopped, channels: [1], forced: row.plugin).mappings.map(\.steerQueue), [1],
            "\(label): channel 1 after stop")

        try startAgainAfterACrash(row, label, before: held, firstQuestions: questions)
        try bindAgainAfterAChannelChange(row, label, before: held)
    }

    /// Killed while running: the kernel closed the sockets and the BPF link
    /// with the process, so the driver shows the state before the start (old
    /// mlx5's counts no longer doubled), and the NIC journal deletes, at the
    /// next start, the rules that left with the pipeline — exactly those to
    /// queues nobody reads now. The restarted daemon asks the same questions
    /// from live facts as the first start and binds the same map.
    private func startAgainAfterACrash(
        _ row: LifeCycleCase, _ label: String, before: InterfaceLease,
        firstQuestions: (zeroCopy: DriverFacts, copy: DriverFacts)
    ) throws {
        let afterCrash = row.model.facts()
        XCTAssertFalse(afterCrash.xdpAttached, label)
        XCTAssertEqual(afterCrash.zeroCopySockets, 0, label)
        XCTAssertEqual(afterCrash.channels.receiveChannels, row.model.channels, "\(label): counts as before the start")
        for leased in before.channels {
            let queue = leased.mapping.steerQueue
            let unread = MappingLifeCycle.unreadQueueProblem(
                interface: "eth7", queue: queue, receiveChannels: before.receiveChannels, readQueues: []) != nil
            XCTAssertEqual(MappingLifeCycle.ruleLeavesWithPipeline(queue: queue, lease: before), unread,
                           "\(label): the journal deletes the rule to queue \(queue) after a crash exactly when nobody reads it then")
        }
        let questions = MappingLifeCycle.questions(live: afterCrash, bindMode: row.bindMode, attachMode: row.attachMode)
        XCTAssertEqual(questions.zeroCopy, firstQuestions.zeroCopy, "\(label): the restart asks what the first start asked")
        XCTAssertEqual(questions.copy, firstQuestions.copy, label)
        let lease = try host.acquire(questions.zeroCopy)
        defer { lease.release() }
        let channels = try lease.prepare(questions.zeroCopy).defaultChannels(for: questions.zeroCopy)
        let (zeroCopy, copy) = try MappingLifeCycle.answers(for: channels, from: lease, to: questions)
        let again = MappingLifeCycle.inEffect(
            zeroCopy: zeroCopy, copy: copy, socketsBoundZeroCopy: Array(repeating: row.zeroCopy, count: channels.count),
            attachMode: row.attachMode)
        XCTAssertEqual(again.map(\.mapping), before.channels.map(\.mapping), "\(label): the map after the restart")
        XCTAssertEqual(again.map(\.mode), before.channels.map(\.mode), label)
    }

    /// The channels changed (under the pipeline where the driver allows it,
    /// else once its sockets are closed): the pipeline binds again with the
    /// map the same steps derive from the new live facts, never with the
    /// old one. On old mlx5 every zero-copy queue moves (channels + i).
    private func bindAgainAfterAChannelChange(_ row: LifeCycleCase, _ label: String, before: InterfaceLease) throws {
        var model = row.model
        model.channels += 1
        model.sysfsRx = row.model.sysfsRx / row.model.channels * model.channels
        model.sysfsTx = model.channels
        let questions = MappingLifeCycle.questions(live: model.facts(), bindMode: row.bindMode, attachMode: row.attachMode)
        let lease = try host.acquire(questions.zeroCopy)
        defer { lease.release() }
        let preparation = try lease.prepare(questions.zeroCopy)
        let channels = preparation.defaultChannels(for: questions.zeroCopy)
        XCTAssertEqual(channels, Array(0..<model.channels), "\(label): every channel there is now")
        let (zeroCopy, copy) = try MappingLifeCycle.answers(for: channels, from: lease, to: questions)
        let boundZeroCopy = row.zeroCopy
        let again = MappingLifeCycle.inEffect(
            zeroCopy: zeroCopy, copy: copy, socketsBoundZeroCopy: Array(repeating: boundZeroCopy, count: channels.count),
            attachMode: row.attachMode)
        let expected = channels.map { row.zeroCopyOnlyQueues ? model.channels + $0 : $0 }
        XCTAssertEqual(again.map(\.mapping.bindQueue), expected, "\(label): bind queues after the channel change")
        XCTAssertEqual(again.map(\.mapping.xskmapKey), expected, "\(label): XSKMAP keys after the channel change")
        XCTAssertEqual(again.map(\.mapping.steerQueue), expected, "\(label): steer queues after the channel change")
        if row.zeroCopyOnlyQueues {
            for old in before.channels {
                XCTAssertNotEqual(again.first { $0.mapping.channel == old.mapping.channel }?.mapping.bindQueue,
                                  old.mapping.bindQueue, "\(label): channel \(old.mapping.channel) moved; the old map is stale")
            }
        }
    }

    /// The periodic check binds a pipeline again only when sysfs shows other
    /// rx queues than it bound at two checks in a row: a notification's
    /// rebind, which comes within milliseconds, always wins the first.
    func testRxQueuesChangedUnnoticedRebindAtTheSecondCheck() {
        typealias Change = MappingLifeCycle.UnnoticedQueueChange
        XCTAssertEqual(MappingLifeCycle.unnoticedQueueChange(liveRxQueues: 4, boundRxQueues: 4, suspectedAtLastCheck: false), Change.none)
        XCTAssertEqual(MappingLifeCycle.unnoticedQueueChange(liveRxQueues: 4, boundRxQueues: 4, suspectedAtLastCheck: true), Change.none,
                       "the notification's rebind bound the new queues")
        XCTAssertEqual(MappingLifeCycle.unnoticedQueueChange(liveRxQueues: 4, boundRxQueues: 2, suspectedAtLastCheck: false), .suspected)
        XCTAssertEqual(MappingLifeCycle.unnoticedQueueChange(liveRxQueues: 4, boundRxQueues: 2, suspectedAtLastCheck: true), .rebind)
        XCTAssertEqual(MappingLifeCycle.unnoticedQueueChange(liveRxQueues: nil, boundRxQueues: 2, suspectedAtLastCheck: true), Change.none,
                       "an interface that cannot be read is stopped by its removal, not bound again")
    }

    /// virtio_net adds rx queues at XDP attach (a queue pair per CPU for
    /// XDP_TX): a pipeline on the default channels with identity mapping
    /// binds the unread ones, one with configured channels or another
    /// mapping leaves them unread and says why; veth's count does not change.
    func testQueuesAddedAtXDPAttachAreBoundOnlyWithDefaultChannelsAndIdentity() {
        typealias Added = MappingLifeCycle.AddedQueues
        XCTAssertEqual(MappingLifeCycle.addedQueues(
            before: 2, after: 2, boundQueues: [0, 1], configuredChannels: nil, identity: true), Added.none, "veth")
        XCTAssertEqual(MappingLifeCycle.addedQueues(
            before: 1, after: 3, boundQueues: [0], configuredChannels: nil, identity: true), .bind([1, 2]))
        XCTAssertEqual(MappingLifeCycle.addedQueues(
            before: 1, after: 3, boundQueues: [0, 2], configuredChannels: nil, identity: true), .bind([1]),
            "a queue some socket reads already is not bound twice")
        guard case .unread(let queues, let why) = MappingLifeCycle.addedQueues(
            before: 1, after: 3, boundQueues: [0], configuredChannels: [0], identity: true) else {
            return XCTFail("configured channels leave the added queues out")
        }
        XCTAssertEqual(queues, [1, 2])
        XCTAssertTrue(why.contains("channels [0] only"), why)
        guard case .unread([1, 2], let other) = MappingLifeCycle.addedQueues(
            before: 1, after: 3, boundQueues: [0], configuredChannels: nil, identity: false) else {
            return XCTFail("a mapping other than identity gives the added queues no channel")
        }
        XCTAssertTrue(other.contains("not identity"), other)
        // A channel notification of the attach's own growth does not rebind (no loop); any other does.
        XCTAssertTrue(MappingLifeCycle.isOwnAttachGrowth(notifiedReceiveChannels: 3, before: 1, after: 3, liveRxQueues: 3))
        XCTAssertFalse(MappingLifeCycle.isOwnAttachGrowth(notifiedReceiveChannels: 2, before: 1, after: 3, liveRxQueues: 2))
        XCTAssertFalse(MappingLifeCycle.isOwnAttachGrowth(notifiedReceiveChannels: 2, before: 2, after: 2, liveRxQueues: 2), "veth")
        XCTAssertFalse(MappingLifeCycle.isOwnAttachGrowth(notifiedReceiveChannels: nil, before: 1, after: 3, liveRxQueues: 3))
        let warning = MappingLifeCycle.unreadAddedQueuesWarning(
            interface: "ens4", driver: "virtio_net", before: 1, after: 3, queues: [1, 2], why: why)
        for part in ["virtio_net", "ens4", "1 → 3", "queues [1, 2]", why] {
            XCTAssertTrue(warning.contains(part), "\(part) in \(warning)")
        }
    }
}
