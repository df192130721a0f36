import Foundation
import Logging
import SluiceControl
import SluiceDataPath
import SluiceNIC
import SluicePluginHost
import SluiceProtocol
import SluiceSystem
import Synchronization

/// One answer to "which queue is channel i of this interface": the running
/// pipeline's lease for the channels it bound (what its sockets, XSKMAP keys
/// and rules really use), otherwise the plugin asked with live facts. Every
/// command that maps a channel goes through here.
extension Daemon {
    /// The plugin host's view of a real interface as it is now: ethtool's
    /// channel counts, sysfs's queues, the XDP program attached (and how),
    /// and the zero-copy AF_XDP sockets bound on it by any process. Every
    /// question to a plugin about a real interface starts here; while a
    /// pipeline runs on it, its lease (`PipelineManager.lease(for:)`) answers
    /// for the channels it bound instead.
    ///
    /// `ownZeroCopySockets`: Sluice's own zero-copy sockets on the interface,
    /// the count given when the kernel cannot list every process's (Debian's
    /// kernels are built without AF_XDP sock_diag).
    static func liveFacts(for name: String, nic: NICController, ownZeroCopySockets: UInt32 = 0) throws -> DriverFacts {
        let info = try nic.interface(name)
        let channels = try? nic.channels(name).value
        var facts = try DriverFacts.gather(
            interface: name, driver: info.driver, driverVersion: info.driverVersion,
            firmwareVersion: info.firmwareVersion,
            channels: ChannelCounts(rx: channels?.rx ?? 0, tx: channels?.tx ?? 0, combined: channels?.combined ?? 0),
            maxChannels: ChannelCounts(
                rx: channels?.maxRX ?? 0, tx: channels?.maxTX ?? 0, combined: channels?.maxCombined ?? 0))
        if let xdp = info.xdp {
            facts.xdpAttached = true
            facts.xdpMode = switch xdp.mode {
            case "skb": .skb
            case "hw": .offload
            default: .native
            }
        }
        facts.zeroCopySockets = zeroCopySockets(on: info.index) ?? ownZeroCopySockets
        return facts
    }

    /// Zero-copy AF_XDP sockets bound on the interface by any process (the
    /// kernel's AF_XDP sock_diag); nil, with a warning once, when the kernel
    /// cannot say.
    static func zeroCopySockets(on interfaceIndex: UInt32) -> UInt32? {
        do {
            return try XSKSocketDiagnostics.zeroCopySockets(interfaceIndex: interfaceIndex)
        } catch {
            if diagnosticsWarning.withLock({ let first = !$0; $0 = true; return first }) {
                Logger(label: "sluiced").warning(
                    "zero-copy AF_XDP sockets of other processes cannot be counted; plugins are told only Sluice's own",
                    metadata: ["error": "\(error)"])
            }
            return nil
        }
    }

    /// Sluice's own zero-copy sockets on `name` (a running pipeline's).
    func ownZeroCopySockets(_ name: String) -> UInt32 {
        UInt32(pipelines.lease(for: name)?.channels.filter { $0.mode == .zeroCopy }.count ?? 0)
    }

    /// Where `channel` of `name` is served: the lease's mapping when a
    /// pipeline bound that channel, else the plugin's answer for live facts
    /// (a channel no socket of ours reads is a regular receive queue: the
    /// plugin is asked for the copy-mode mapping, which names that queue).
    func channelMapping(
        _ name: String, channel: UInt32, forced: String?
    ) throws -> (mapping: QueueMapping, source: MappingSource, mode: SocketMode?) {
        let lease = pipelines.lease(for: name)
        if let lease, let forced, forced != lease.plugin {
            throw ControlError.busy(
                "a pipeline on \(name) is running with the \(lease.plugin) plugin; stop it to map with \(forced)")
        }
        if let lease, let leased = lease.channel(channel) {
            return (leased.mapping, .pipeline, leased.mode)
        }
        let plugin = lease?.plugin ?? forced
        guard let mapping = try plugins.explain(try regularQueueFacts(name), channels: [channel], forced: plugin).mappings.first else {
            throw ControlError.internal("the driver plugin returned no mapping for channel \(channel) of \(name)")
        }
        return (mapping, .liveFacts, nil)
    }

    /// Live facts for a channel no socket of Sluice reads: a regular
    /// receive queue, so the plugin is asked for the copy-mode answer
    /// (`steer.add` and `plugins.explain` ask alike).
    func regularQueueFacts(_ name: String) throws -> DriverFacts {
        var facts = try Self.liveFacts(for: name, nic: nic, ownZeroCopySockets: ownZeroCopySockets(name))
        facts.zeroCopyRequested = false
        return facts
    }
}

private let diagnosticsWarning = Mutex(false)

extension Daemon {
    /// The device's receive channels as its plugin counts them: the count a
    /// running pipeline's sockets were bound with, else the plugin's count
    /// from live facts (ethtool's is doubled on old mlx5 while zero-copy
    /// sockets are bound). Queues at or above exist only as zero-copy queues.
    func receiveChannels(_ name: String) throws -> UInt32 {
        if let lease = pipelines.lease(for: name) { return lease.receiveChannels }
        let facts = try Self.liveFacts(for: name, nic: nic)
        let preparation = try plugins.explain(facts, channels: [], forced: forcedPlugin(for: name)).preparation
        return preparation.receiveChannels ?? facts.channels.receiveChannels
    }

    /// Why a rule steering to `queue` of `name` would make the NIC drop what
    /// it matches (MappingLifeCycle.unreadQueueProblem), or nil: read are the
    /// running pipeline's queues and any process's AF_XDP sockets' queues.
    func unreadQueueProblem(_ name: String, queue: UInt32) throws -> String? {
        let channels = try receiveChannels(name)
        var read = Set(pipelines.lease(for: name)?.channels.map(\.mapping.bindQueue) ?? [])
        if queue >= channels, let index = try? nic.interface(name).index,
           let queues = try? XSKSocketDiagnostics.boundQueues(interfaceIndex: index) {
            read.formUnion(queues)
        }
        return MappingLifeCycle.unreadQueueProblem(
            interface: name, queue: queue, receiveChannels: channels, readQueues: read)
    }
}

/// Changes under a running pipeline are handled here, one at a time, off the
/// monitor's thread (which must keep reading netlink) and off the event loops.
private let rebindQueue = DispatchQueue(label: "sluiced.rebind")

extension Daemon {
    /// Called for every NIC event. A channel change means new queues (and a
    /// new mapping): the pipeline binds again. An XDP program other than the
    /// pipeline's on the interface means its sockets see nothing: bind again
    /// too. The interface gone: the pipeline stops, saying why. The state is
    /// read again when the event is handled, so events from Sluice's own
    /// start and stop, seen late, change nothing.
    func pipelineMayBeStale(after event: NICEvent) {
        let name = event.interface
        guard [.channels, .link, .linkRemoved].contains(event.kind), pipelines.lease(for: name) != nil else { return }
        rebindQueue.async { [weak self] in
            guard let self, let programID = self.pipelines.programID(for: name) else { return }
            switch event.kind {
            case .channels:
                if let attach = self.pipelines.rxQueuesAtAttach(for: name), MappingLifeCycle.isOwnAttachGrowth(
                    notifiedReceiveChannels: event.channels.map { $0.combined + $0.rx }, before: attach.before,
                    after: attach.after, liveRxQueues: try? NetworkDevice.queueCounts(InterfaceName(name)).rx) {
                    return
                }
                let counts = event.channels.map { "rx \($0.rx), tx \($0.tx), combined \($0.combined)" } ?? "unknown"
                self.pipelines.rebind(name, self.config, because: "the channels of \(name) changed (now \(counts))")
            case .linkRemoved:
                self.pipelines.stopForGood(name, because: "\(name) was removed")
            default:
                self.rebindIfProgramChanged(name, programID: programID)
            }
        }
    }

    /// Binds `name`'s pipeline again when the XDP program attached there is
    /// not its own (`programID`) any more; on `rebindQueue`. The interface
    /// gone (a removal whose notification was lost, or a rename) stops it; a
    /// query that fails says nothing either way, so it changes nothing.
    private func rebindIfProgramChanged(_ name: String, programID: UInt32) {
        let index = if_nametoindex(name)
        guard index != 0 else {
            pipelines.stopForGood(name, because: "\(name) is gone (removed or renamed)")
            return
        }
        let attached: UInt32
        do { attached = try NICDiscovery.queryXDPAttachment(index: index)?.programID ?? 0 } catch { return }
        guard attached != programID else { return }
        let what = attached == 0 ? "Sluice's XDP program is no longer attached to \(name)"
            : "another XDP program (id \(attached)) replaced Sluice's (id \(programID)) on \(name)"
        pipelines.rebind(name, config, because: what, ifProgram: programID)
    }

    /// Binds `name`'s pipeline (the one with `programID`) again when sysfs
    /// has shown other rx queues than it bound at two checks in a row: the
    /// channels changed and no notification said so (a netlink overrun, or
    /// no monitor). A notification arrives within milliseconds and its
    /// rebind starts a new pipeline, so it always wins the first check.
    private func rebindIfQueuesChangedUnnoticed(_ name: String, programID: UInt32) {
        guard pipelines.programID(for: name) == programID, let attach = pipelines.rxQueuesAtAttach(for: name) else { return }
        let live = try? NetworkDevice.queueCounts(InterfaceName(name)).rx
        let suspected = attachmentCheck.withLock { $0.queueChangeSuspected[name] == programID }
        let verdict = MappingLifeCycle.unnoticedQueueChange(
            liveRxQueues: live, boundRxQueues: attach.after, suspectedAtLastCheck: suspected)
        attachmentCheck.withLock { $0.queueChangeSuspected[name] = verdict == .suspected ? programID : nil }
        guard verdict == .rebind, let live else { return }
        pipelines.rebind(name, config, because: "the rx queues of \(name) changed (\(attach.after) → \(live)) and no channel notification said so",
                         ifProgram: programID)
    }

    /// How often the running pipelines' XDP programs and rx queues are checked.
    static let attachmentCheckInterval: DispatchTimeInterval = .seconds(1)

    /// Checks every running pipeline's XDP program and rx queue count each
    /// ``attachmentCheckInterval``, besides the notifications: detaching its
    /// BPF link (`bpftool link detach`, the one way to take the program off
    /// while Sluice holds the link) sends no rtnetlink notification, and a
    /// netlink overrun loses them. Without the check such a pipeline would
    /// receive nothing, or run on a stale map, silently.
    func startCheckingAttachments() {
        attachmentCheck.withLock { check in
            let timer = DispatchSource.makeTimerSource(queue: rebindQueue)
            timer.schedule(deadline: .now() + Self.attachmentCheckInterval, repeating: Self.attachmentCheckInterval)
            timer.setEventHandler { [weak self] in
                guard let self else { return }
                for name in self.pipelines.runningInterfaces {
                    guard let programID = self.pipelines.programID(for: name) else { continue }
                    self.rebindIfProgramChanged(name, programID: programID)
                    self.rebindIfQueuesChangedUnnoticed(name, programID: programID)
                }
            }
            timer.resume()
            check.timer = timer
        }
    }

    func stopCheckingAttachments() {
        attachmentCheck.withLock { check in
            check.timer?.cancel()
            check.timer = nil
        }
    }
}

/// The periodic check's timer, and per interface the XDP program of the
/// pipeline whose rx queues differed from its bound ones at the last check.
struct AttachmentCheck {
    var timer: DispatchSourceTimer?
    var queueChangeSuspected: [String: UInt32] = [:]
}

