import ArgumentParser
import SluiceControl
import SluiceModules

struct PipelineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline", abstract: "Start, stop and inspect the AF_XDP receive pipelines.",
        subcommands: [
            PipelineStatusCommand.self, PipelineStartCommand.self, PipelineStopCommand.self, PipelineModulesCommand.self,
        ])

    /// Accepts `--socket`/`--json` given before `pipeline` (see NICCommand).
    @OptionGroup(visibility: .hidden) var connection: ConnectionOptions
}

struct PipelineStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Pipelines, mappings, sockets, counters.")
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let status = try connection.call(Methods.PipelineStatus.self)
        if connection.json { return }
        print("mode: \(text(status.mode))  autostart: \(status.autostart)  modules: \(status.modules.joined(separator: ", "))")
        if status.pipelines.isEmpty && status.failedStarts.isEmpty {
            print("no pipeline has run; `sluicectl pipeline start` starts the configured interfaces")
        }
        for failure in status.failedStarts {
            print("")
            print("\(failure.interface): not running: the start at \(failure.at) failed: \(failure.error)")
            print("  fix the cause, then `sluicectl pipeline start \(failure.interface)`")
        }
        for pipeline in status.pipelines { print(""); print(StatsText.pipeline(pipeline)) }
    }
}

struct PipelineStartCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start", abstract: "Start the pipelines of the configured interfaces (or one).")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Only this interface.", transform: InterfaceName.argument) var iface: InterfaceName?

    func run() throws {
        let result = try connection.call(Methods.PipelineStart.self, .init(iface: iface))
        if connection.json { return }
        for pipeline in result.pipelines { print(StatsText.pipeline(pipeline)) }
    }
}

struct PipelineStopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop", abstract: "Stop the pipelines (or one); prints their final counters.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Only this interface.", transform: InterfaceName.argument) var iface: InterfaceName?

    func run() throws {
        let result = try connection.call(Methods.PipelineStop.self, .init(iface: iface))
        if connection.json { return }
        for pipeline in result.pipelines { print(StatsText.pipeline(pipeline)) }
    }
}

struct PipelineModulesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "modules", abstract: "The module kinds [[pipeline.modules]] accepts, with their options (no daemon needed).")

    func run() throws { print(Self.listing()) }

    /// From the module registry config reads its options by, so it cannot drift from what config accepts.
    static func listing() -> String {
        ModuleKind.allCases.map { kind in
            let descriptor = kind.descriptor
            var rows = [["  OPTION", "TYPE", "LIMITS", "DEFAULT", "SUMMARY"]]
            for option in descriptor.options {
                let limits = option.range.map { "\($0.lowerBound)...\($0.upperBound)" }
                    ?? (option.choices.isEmpty ? "-" : option.choices.joined(separator: "|"))
                rows.append(["  " + option.name, option.type.rawValue, limits, option.defaultText ?? "(required)", option.summary])
            }
            return "\(kind): \(descriptor.summary)" + (descriptor.options.isEmpty ? "\n  no options" : "\n" + Render.table(rows))
        }.joined(separator: "\n\n")
    }
}

/// The stats and pipeline tables of `stats --watch` and `pipeline status`.
enum StatsText {
    /// A `stats.subscribe` event's data: `stats.get`'s reply with a "rates"
    /// object beside each pipeline's totals.
    static func summary(_ data: JSONValue) -> String {
        guard let stats = try? data.decode(as: Methods.StatsGet.Response.self) else { return data.serialized() }
        // RateTracker adds a "rates" object beside every object of counters,
        // keyed by the counters' own names.
        let rates = data["pipelines"]?.arrayValue?.map { try? $0["rates"]?.decode(as: [String: Double].self) } ?? []
        return summary(stats, rates: rates)
    }

    /// `rates[i]` are pipeline `i`'s per-second rates, when known.
    static func summary(_ stats: Methods.StatsGet.Response, rates: [[String: Double]?] = []) -> String {
        var lines = ["uptime \(Render.scalar(.double(stats.uptimeSeconds)))s   clients \(stats.control.clients)   "
            + "commands \(stats.control.commandsServed)"]
        for (index, report) in stats.pipelines.enumerated() {
            lines.append("")
            lines.append(Self.pipeline(report, rates: index < rates.count ? rates[index] : nil))
        }
        return lines.joined(separator: "\n")
    }

    static func pipeline(_ pipeline: PipelineReport, rates: [String: Double]? = nil) -> String {
        let statistics = pipeline.statistics, totals = pipeline.totals
        var lines = [
            "\(text(pipeline.interface)): \(pipeline.running ? "running" : "stopped"), plugin \(text(pipeline.plugin)), "
                + "\(statistics.mode.rawValue), XDP \(statistics.attachMode.rawValue) (program \(statistics.programID))",
        ]
        if let reason = pipeline.stopReason { lines.append("stopped because \(reason)") }
        if let warning = pipeline.unreadAddedQueues { lines.append("warning: \(warning)") }
        var rows: [[String]] = [["", "RX PACKETS", "RX BYTES", "PKT/S", "BYTES/S", "KERNEL DROP", "RING FULL",
                                 "HANDOFF DROP", "DROPPED", "MALFORMED"]]
        typealias Counter = PipelineReport.Totals.CodingKeys
        rows.append(["total", "\(totals.rxPackets)", "\(totals.rxBytes)", rate(rates?[Counter.rxPackets.stringValue]),
                     rate(rates?[Counter.rxBytes.stringValue]), "\(totals.kernelDropped)", "\(totals.ringFull)",
                     "\(totals.handoffDrops)", "\(totals.dropped)", "\(totals.malformed)"])
        for socket in statistics.sockets {
            rows.append(["ch \(socket.channel) → q \(socket.queue) \(socket.zeroCopy ? "zc" : "copy")",
                         "\(socket.rxPackets)", "\(socket.rxBytes)", "", "",
                         "\(socket.kernel.rxDropped)", "\(socket.kernel.rxRingFull)",
                         "\(socket.handoffDrops)", "\(socket.dropped)", "\(socket.malformed)"])
        }
        lines.append(Render.table(rows))
        // Why a socket runs in copy mode when zero-copy was asked for (bind_mode "auto").
        for socket in statistics.sockets {
            if let reason = socket.fallbackReason { lines.append("ch \(socket.channel) → q \(socket.queue) copy: \(reason)") }
        }
        for socket in statistics.sockets where socket.busyPoll == true {
            lines.append("ch \(socket.channel) → q \(socket.queue) busy poll: \(socket.busyPollKicks ?? 0) kicks, "
                + "\(socket.pollSleeps ?? 0) poll() sleeps")
        }
        if let metadata = statistics.rxMetadata {
            lines.append(metadata.inUse
                ? "rx metadata: in use (timestamp \(metadata.timestamp.rawValue), hash \(metadata.hash.rawValue))"
                : "rx metadata: off: \(text(metadata.reason))")
        }
        for socket in statistics.sockets where socket.multiBuffer == true {
            lines.append("ch \(socket.channel) → q \(socket.queue) multi-buffer: \(socket.multiBufferPackets ?? 0) chained packets, "
                + "\(socket.invalidChains ?? 0) invalid chains")
        }
        for module in pipeline.modules {
            let counters = module.counters.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            lines.append("module \(text(module.kind)): \(counters)")
            if let first = module.rows.first, !first.isEmpty, ModuleKind(rawValue: module.kind) == .count {
                let columns = ["src", "sport", "dst", "dport", "proto", "packets", "bytes"].filter { first[$0] != nil }
                let table = [columns.map { $0.uppercased() }] + module.rows.map { row in columns.map { text(row[$0]) } }
                lines.append(Render.table(table).split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
            }
        }
        return lines.joined(separator: "\n")
    }

    private static func rate(_ value: Double?) -> String {
        guard let number = value else { return "-" }
        return number >= 1_000_000 ? "\((number / 100_000).rounded() / 10)M"
            : number >= 1000 ? "\((number / 100).rounded() / 10)k" : "\(number)"
    }
}
