import Foundation
import SluiceProtocol

#if canImport(Glibc)
import Glibc
#endif

/// The daemon's name for the finding `doctor` replies with.
typealias DoctorFinding = SluiceProtocol.DoctorFinding

/// Everything `doctor` looks at for one interface, gathered by
/// DoctorCommands; plain values so the diagnosis can be tested on made-up numbers.
struct DoctorInput: Sendable {
    struct Socket: Sendable {
        var channel: Int
        var queue: UInt32
        var zeroCopy: Bool
        var fallbackReason: String?
        var rxPackets: UInt64
        var kernelDropped: UInt64 = 0
        var ringFull: UInt64 = 0
        var fillRingEmpty: UInt64 = 0
    }

    /// The XDP program's counters for one rx queue.
    struct QueueProgramCounters: Sendable {
        var queue: UInt32
        var redirected: UInt64
        var passed: UInt64
        var redirectFailed: UInt64
        var total: UInt64 { redirected &+ passed &+ redirectFailed }
    }

    struct Mapping: Sendable {
        var channel: UInt32
        var bindQueue: UInt32
        var steerQueue: UInt32
    }

    struct Rule: Sendable {
        var location: UInt32?
        /// nil: the rule drops.
        var queue: UInt32?
        var summary: String
    }

    struct Pipeline: Sendable {
        var running: Bool
        var plugin: String
        var attachMode: String
        var programID: UInt32
        var mappings: [Mapping]
        var sockets: [Socket]
        var program: [QueueProgramCounters]
        var steeringRequired: Bool = false
        var prefilter: Bool = false
        var bindMode: String = "auto"
        /// Why rx queues the XDP attach added (virtio_net) are read by no socket.
        var unreadAddedQueues: String?
        /// Driver RX metadata as the pipeline reports it (nil: a daemon without).
        var rxMetadata: RxMetadataStatus?
        /// `rx_metadata` of the interface's config (`auto` or `off`).
        var rxMetadataMode: String = "auto"
        /// The XDP program's metadata counters summed over queues, by name.
        var rxMetadataCounters: [(String, UInt64)] = []
    }

    var interface: String
    var ifindex: UInt32 = 0
    var configured: Bool = true
    var rxQueues: Int
    var pipeline: Pipeline?
    /// Per-queue `ethtool -S` counters (`packets`, `xdp_packets`, ...), by rx queue.
    var driverQueues: [UInt32: [String: UInt64]] = [:]
    var driverStatisticsProblem: String?
    var driver: String = ""
    /// nil with `rulesProblem` set when the driver has no ntuple filters.
    var rules: [Rule]?
    var rulesProblem: String?
    /// The program attached to the interface now (nil: none).
    var attachedProgramID: UInt32?
    var attachedMode: String?
    var outsideChanges: [String] = []
    var traceEvents: [TraceEvent] = []
    var traceProblem: String?
    /// Receive channels of the interface as its plugin counts them (a running
    /// pipeline's, else from live facts); queues at or above exist only as
    /// zero-copy AF_XDP queues (mlx5 before Linux 6.1).
    var receiveChannels: UInt32?
    /// Queues some AF_XDP socket of any process is bound to (sock_diag); nil
    /// when the kernel cannot say.
    var boundQueues: Set<UInt32>?
}

/// Why a bound queue sees no packets, in findings sorted worst first.
enum Doctor {
    static func diagnose(_ input: DoctorInput) -> [DoctorFinding] {
        var findings: [DoctorFinding] = []
        let name = input.interface
        func add(_ severity: DoctorFinding.Severity, _ title: String, queue: UInt32? = nil,
                 _ evidence: [String] = [], fix: String? = nil) {
            findings.append(DoctorFinding(severity: severity, interface: name, queue: queue, title: title,
                                          evidence: evidence, fix: fix))
        }
        let restart = restart(name)

        diagnoseRulesToUnreadQueues(input, add: add)
        guard let pipeline = input.pipeline, pipeline.running else {
            let stopped = input.pipeline != nil
            if let id = input.attachedProgramID {
                add(.warning, "an XDP program Sluice did not load is attached to \(name) (id \(id))",
                    ["attached program id \(id), mode \(input.attachedMode ?? "?")"],
                    fix: "ip link set dev \(name) xdp off")
            }
            add(.error, stopped ? "the pipeline on \(name) is stopped" : "no pipeline runs on \(name)",
                input.configured ? [] : ["\(name) is not an [[interface]] in the configuration"],
                fix: input.configured ? "sluicectl pipeline start \(name)"
                    : "add [[interface]] name = \"\(name)\" to the config, then `sluicectl reload && sluicectl pipeline start \(name)`")
            return sorted(findings)
        }

        diagnoseAttachment(input, pipeline, restart: restart, add: add)
        if let unread = pipeline.unreadAddedQueues {
            add(.warning, "rx queues added at XDP attach on \(name) are read by no socket", [unread],
                fix: "leave `channels` out of [[interface]] \(name) (or list the added queues), then `\(restart)`")
        }
        diagnoseQueues(input, pipeline, add: add)
        diagnoseSteering(input, pipeline, add: add)
        diagnoseSockets(input, pipeline, add: add)
        diagnoseTrace(input, pipeline, add: add)
        diagnoseRxMetadata(input, pipeline, restart: restart, add: add)
        for change in input.outsideChanges {
            add(.warning, "changed outside Sluice since it configured \(name)", [change],
                fix: "check `sluicectl nic show \(name)`; \(restart) re-applies Sluice's settings")
        }
        if let problem = input.driverStatisticsProblem {
            add(.info, "driver counters of \(name) unavailable", [problem])
        }
        if !findings.contains(where: { $0.severity >= .warning }) {
            let queues = pipeline.sockets.map { "channel \($0.channel) → queue \($0.queue): \($0.rxPackets) packets" }
            add(.ok, "\(name): \(pipeline.sockets.count) socket(s) bound and nothing in the way", queues)
        }
        return sorted(findings)
    }

    /// Worst first; within a severity, by queue then title (stable output).
    static func sorted(_ findings: [DoctorFinding]) -> [DoctorFinding] {
        findings.sorted {
            ($0.severity, UInt64.max - UInt64($0.queue ?? UInt32.max), $0.title)
                > ($1.severity, UInt64.max - UInt64($1.queue ?? UInt32.max), $1.title)
        }
    }

    /// Records one finding: severity, title, queue, evidence, fix.
    private typealias Add = (DoctorFinding.Severity, String, UInt32?, [String], String?) -> Void

    /// The command that re-creates a pipeline with the current config.
    static func restart(_ name: String) -> String {
        "sluicectl pipeline stop \(name) && sluicectl pipeline start \(name)"
    }

    private static func diagnoseAttachment(
        _ input: DoctorInput, _ pipeline: DoctorInput.Pipeline, restart: String,
        add: Add
    ) {
        let name = input.interface
        guard let attached = input.attachedProgramID else {
            add(.error, "no XDP program is attached to \(name), though Sluice's pipeline runs", nil,
                ["Sluice's program id \(pipeline.programID)"], restart)
            return
        }
        if attached != pipeline.programID {
            add(.error, "a foreign XDP program (id \(attached)) is attached to \(name), not Sluice's (id \(pipeline.programID))",
                nil, ["attached: id \(attached) mode \(input.attachedMode ?? "?")", "Sluice: id \(pipeline.programID)"],
                "ip link set dev \(name) xdp off && \(restart)")
        }
        if pipeline.attachMode == "skb" {
            add(.info, "XDP runs in generic (skb) mode on \(name): copy mode only, slower", nil,
                ["attach_mode skb"], "set attach_mode = \"native\" in [[interface]] \(name), then \(restart)")
        }
    }

    /// Whether the driver's RX timestamp and hash reach pcap and count, and
    /// if not, why and what would change it. Information, not a fault:
    /// packets flow either way.
    private static func diagnoseRxMetadata(
        _ input: DoctorInput, _ pipeline: DoctorInput.Pipeline, restart: String, add: Add
    ) {
        guard let status = pipeline.rxMetadata else { return }
        let name = input.interface
        let evidence = ["reason: \(status.reason)", "timestamp: \(status.timestamp.rawValue)", "hash: \(status.hash.rawValue)"]
            + pipeline.rxMetadataCounters.map { "XDP program, all queues: \($0.0) \($0.1)" }
        guard status.inUse else {
            let fix: String?
            if pipeline.rxMetadataMode == "off" {
                fix = "set rx_metadata = \"auto\" in [[interface]] \(name), then \(restart)"
            } else if pipeline.attachMode == "skb" {
                fix = "set attach_mode = \"native\" in [[interface]] \(name), then \(restart)"
            } else if status.reason.hasPrefix("this kernel has no") {
                fix = "run a kernel with the XDP metadata kfuncs (Linux 6.3 or later), then \(restart)"
            } else {
                fix = nil
            }
            add(.info, "driver RX metadata is not in use on \(name)", nil, evidence, fix)
            return
        }
        let unsupported = [("timestamp", status.timestamp), ("hash", status.hash)].filter { $0.1 == .unsupported }.map(\.0)
        if unsupported.isEmpty {
            add(.info, "driver RX metadata is in use on \(name)", nil, evidence, nil)
        } else {
            let driver = input.driver.isEmpty ? "the driver" : input.driver
            add(.info, "\(driver) on \(name) does not provide the RX \(unsupported.joined(separator: " or ")) (the kfunc answers EOPNOTSUPP)",
                nil, evidence, nil)
        }
    }

    /// The seed's failure: traffic arrives on queues no socket is bound to.
    private static func diagnoseQueues(
        _ input: DoctorInput, _ pipeline: DoctorInput.Pipeline,
        add: Add
    ) {
        let name = input.interface
        let bound = Dictionary(pipeline.sockets.map { ($0.queue, $0) }, uniquingKeysWith: { first, _ in first })
        let program = Dictionary(pipeline.program.map { ($0.queue, $0) }, uniquingKeysWith: { first, _ in first })
        let boundReceived = pipeline.sockets.reduce(UInt64(0)) { $0 &+ $1.rxPackets }
        let boundSummary = pipeline.sockets.map {
            "socket for channel \($0.channel) (queue \($0.queue)) got \($0.rxPackets)"
        }.joined(separator: "; ")
        let queueCount = max(input.rxQueues, (pipeline.program.map { Int($0.queue) + 1 }.max() ?? 0))
        for index in 0..<queueCount {
            let queue = UInt32(index)
            let driver = input.driverQueues[queue] ?? [:]
            let driverPackets = driver["xdp_packets"] ?? driver["packets"]
            let arrived = program[queue]?.total ?? driverPackets ?? 0
            var evidence: [String] = []
            if let counters = program[queue] {
                evidence.append("XDP program, queue \(queue): passed \(counters.passed), redirected \(counters.redirected), redirect failed \(counters.redirectFailed)")
            }
            if let driverPackets {
                evidence.append("driver, rx queue \(queue): \(driver["xdp_packets"] != nil ? "xdp_packets" : "packets") \(driverPackets)")
            }
            if let socket = bound[queue] {
                if let counters = program[queue], counters.passed > 0, socket.rxPackets == 0, counters.redirected == 0 {
                    add(pipeline.prefilter ? .warning : .info,
                        "the XDP program passed all \(counters.passed) packets of bound queue \(queue) to the kernel",
                        queue, evidence + ["socket for channel \(socket.channel) (queue \(queue)) got 0"],
                        pipeline.prefilter
                            ? "widen prefilter_protocols / prefilter_ports in [[interface]] \(name), then `sluicectl reload`"
                            : nil)
                } else if pipeline.prefilter, let counters = program[queue], counters.passed > 0 {
                    add(.info, "the prefilter passed \(counters.passed) packets of queue \(queue) to the kernel",
                        queue, evidence, nil)
                }
                continue
            }
            guard arrived > 0 else { continue }
            let channelHint = pipeline.mappings.first.map { "channel \($0.channel)" } ?? "a bound channel"
            let fix = "bind channel \(queue): channels = [\((pipeline.mappings.map { String($0.channel) } + [String(queue)]).joined(separator: ", "))] in [[interface]] \(name), then `\(restart(name))`"
                + "; or steer the flow to the bound queue: `sluicectl steer add \(name) flow-type udp4 dst-port PORT \(channelHint)`"
                + (input.rules == nil ? " (needs ntuple filters; \(input.driver.isEmpty ? "this driver" : input.driver) has none)" : "")
            add(boundReceived == 0 ? .error : .warning,
                "queue \(queue) receives \(arrived) packets but no socket is bound to it",
                queue, evidence + [boundSummary.isEmpty ? "no socket is bound on \(name)" : boundSummary], fix)
        }
    }

    /// A rule whose action is a zero-copy-only queue that no socket reads
    /// makes the NIC drop what it matches, whoever installed it and whether
    /// or not a pipeline runs.
    private static func diagnoseRulesToUnreadQueues(_ input: DoctorInput, add: Add) {
        guard let rules = input.rules, let channels = input.receiveChannels else { return }
        let name = input.interface
        let bound = readQueues(input)
        for rule in rules {
            guard let queue = rule.queue, isUnreadZeroCopyQueue(queue, input) else { continue }
            let location = rule.location.map(String.init) ?? "?"
            add(.error, "ntuple rule \(location) steers to queue \(queue), which no AF_XDP socket reads: the NIC drops what it matches",
                queue, [rule.summary,
                        "queue \(queue) is beyond the \(channels) receive channels of \(name): only a zero-copy AF_XDP socket's queue is there (as on mlx5 before Linux 6.1)",
                        input.boundQueues == nil ? "other processes' sockets could not be listed (no AF_XDP sock_diag)"
                            : "AF_XDP sockets are bound to queues: \(bound.sorted().map(String.init).joined(separator: ", "))"],
                "ethtool -N \(name) delete \(location), or start the pipeline that reads queue \(queue) first")
        }
    }

    private static func readQueues(_ input: DoctorInput) -> Set<UInt32> {
        input.boundQueues ?? Set(input.pipeline.map { $0.running ? $0.sockets.map(\.queue) : [] } ?? [])
    }

    static func isUnreadZeroCopyQueue(_ queue: UInt32, _ input: DoctorInput) -> Bool {
        guard let channels = input.receiveChannels else { return false }
        return MappingLifeCycle.isUnreadZeroCopyQueue(queue, receiveChannels: channels, readQueues: readQueues(input))
    }

    private static func diagnoseSteering(
        _ input: DoctorInput, _ pipeline: DoctorInput.Pipeline,
        add: Add
    ) {
        let name = input.interface
        guard let rules = input.rules else {
            if pipeline.steeringRequired {
                add(.error, "the \(pipeline.plugin) plugin needs ntuple steering on \(name), and the rules cannot be read",
                    nil, [input.rulesProblem ?? "unknown"], "ethtool -K \(name) ntuple on")
            } else {
                add(.info, "no ntuple rules on \(name): traffic reaches queues by RSS/XPS only", nil,
                    [input.rulesProblem ?? "not supported"], nil)
            }
            return
        }
        let steerQueues = Set(pipeline.mappings.map(\.steerQueue))
        for rule in rules {
            // Rules that make the NIC drop are reported once, as errors, above.
            guard let queue = rule.queue, !steerQueues.contains(queue), !isUnreadZeroCopyQueue(queue, input) else { continue }
            let location = rule.location.map(String.init) ?? "?"
            add(.warning, "ntuple rule \(location) steers to queue \(queue), which no socket is bound to", queue,
                [rule.summary, "bound steer queues: \(steerQueues.sorted().map(String.init).joined(separator: ", "))"],
                "ethtool -N \(name) delete \(location), then `sluicectl steer add \(name) … channel N` for a bound channel")
        }
        guard pipeline.steeringRequired else { return }
        let steered = Set(rules.compactMap(\.queue))
        for mapping in pipeline.mappings where !steered.contains(mapping.steerQueue) {
            add(.warning, "channel \(mapping.channel) (steer queue \(mapping.steerQueue)) has no ntuple rule, and the \(pipeline.plugin) plugin needs one",
                mapping.bindQueue, ["\(rules.count) rule(s) on \(name), none to queue \(mapping.steerQueue)"],
                "sluicectl steer add \(name) flow-type udp4 dst-port PORT channel \(mapping.channel)")
        }
    }

    private static func diagnoseSockets(
        _ input: DoctorInput, _ pipeline: DoctorInput.Pipeline,
        add: Add
    ) {
        let name = input.interface
        for socket in pipeline.sockets {
            if !socket.zeroCopy {
                add(.info, "socket on queue \(socket.queue) runs in copy mode", socket.queue,
                    ["bind_mode \(pipeline.bindMode)", "reason: \(socket.fallbackReason ?? (pipeline.bindMode == "copy" ? "bind_mode = \"copy\"" : "the driver plugin asks for copy mode (no zero-copy on this driver)"))"], nil)
            }
            let lost = socket.kernelDropped &+ socket.ringFull &+ socket.fillRingEmpty
            if lost > 0 {
                add(.warning, "the kernel dropped \(lost) packets for the socket on queue \(socket.queue)", socket.queue,
                    ["rx dropped \(socket.kernelDropped)", "rx ring full \(socket.ringFull)",
                     "fill ring empty \(socket.fillRingEmpty)", "received \(socket.rxPackets)"],
                    "raise rx_ring / fill_ring / frames in [pipeline] (or spread the flows over more channels), then `\(restart(name))`")
            }
        }
        for counters in pipeline.program where counters.redirectFailed > 0 {
            add(.warning, "\(counters.redirectFailed) packets of queue \(counters.queue) found no socket at their XSKMAP key",
                counters.queue, ["XDP program, queue \(counters.queue): redirect failed \(counters.redirectFailed)"],
                restart(name))
        }
    }

    private static func diagnoseTrace(
        _ input: DoctorInput, _ pipeline: DoctorInput.Pipeline,
        add: Add
    ) {
        let name = input.interface
        if let problem = input.traceProblem {
            add(.info, "xdp tracepoints not sampled", nil, [problem], nil)
        }
        let failures = input.traceEvents.filter {
            TraceEvent.failureEvents.contains($0.event) && (input.ifindex == 0 || $0.ifindex == input.ifindex)
        }
        var groups: [String: (count: Int, example: TraceEvent)] = [:]
        for event in failures {
            let key = "\(event.event) action=\(event.action ?? "?") err=\(event.err ?? 0)"
            if let existing = groups[key] { groups[key] = (existing.count + 1, existing.example) } else { groups[key] = (1, event) }
        }
        for (key, group) in groups.sorted(by: { $0.key < $1.key }) {
            let event = group.example
            let err = event.err ?? 0
            let reason = err < 0 ? String(cString: strerror(-err)) : ""
            var fix = "sluicectl trace \(name) shows them live"
            if err == -ENOSPC || err == -EMSGSIZE {
                fix = "frames are larger than a UMEM frame: ip link set dev \(name) mtu 1500, or frame_size = 4096 in [pipeline]"
            } else if err == -EINVAL {
                fix = "a socket at the XSKMAP key is bound to another queue: \(restart(name))"
            } else if err == -ENOBUFS || err == -ENOMEM {
                fix = "the socket's rings are full: raise rx_ring / fill_ring / frames in [pipeline], then restart the pipeline"
            } else if event.event == "xdp_exception" {
                fix = "an XDP program returned ABORTED or an action the driver cannot do; ip link show dev \(name) names the program"
            }
            add(.error, "\(group.count) xdp:\(event.event) event(s) on \(name)\(reason.isEmpty ? "" : ": \(reason)")", nil,
                [key + (event.progID.map { " prog_id=\($0)" } ?? "") + (event.progID == pipeline.programID ? " (Sluice's program)" : ""),
                 "example: \((event.raw ?? "").trimmingCharacters(in: .whitespaces))"],
                fix)
        }
    }
}
