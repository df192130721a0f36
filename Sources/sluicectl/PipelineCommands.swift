import ArgumentParser
import SluiceControl

struct PipelineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline", abstract: "Start, stop and inspect the AF_XDP receive pipelines.",
        subcommands: [PipelineStatusCommand.self, PipelineStartCommand.self, PipelineStopCommand.self])

    /// Accepts `--socket`/`--json` given before `pipeline` (see NICCommand).
    @OptionGroup(visibility: .hidden) var connection: ConnectionOptions
}

struct PipelineStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Pipelines, mappings, sockets, counters.")
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let result = try connection.call("pipeline.status")
        if connection.json { return }
        print("mode: \(text(result["mode"]))  autostart: \(text(result["autostart"]))  modules: \(text(result["modules"]))")
        let pipelines = result["pipelines"]?.arrayValue ?? []
        if pipelines.isEmpty { print("no pipeline has run; `sluicectl pipeline start` starts the configured interfaces") }
        for pipeline in pipelines { print(""); print(StatsText.pipeline(pipeline)) }
    }
}

struct PipelineStartCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start", abstract: "Start the pipelines of the configured interfaces (or one).")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Only this interface.") var iface: String?

    func run() throws {
        let result = try connection.call("pipeline.start", iface.map { ["iface": .string($0)] } ?? [:])
        if connection.json { return }
        for pipeline in result["pipelines"]?.arrayValue ?? [] { print(StatsText.pipeline(pipeline)) }
    }
}

struct PipelineStopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop", abstract: "Stop the pipelines (or one); prints their final counters.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Only this interface.") var iface: String?

    func run() throws {
        let result = try connection.call("pipeline.stop", iface.map { ["iface": .string($0)] } ?? [:])
        if connection.json { return }
        for pipeline in result["pipelines"]?.arrayValue ?? [] { print(StatsText.pipeline(pipeline)) }
    }
}

/// The stats and pipeline tables of `stats --watch` and `pipeline status`.
enum StatsText {
    static func summary(_ data: JSONValue) -> String {
        var lines: [String] = []
        let control = data["control"]
        lines.append("uptime \(text(data["uptime_seconds"]))s   clients \(text(control?["clients"]))   "
            + "commands \(text(control?["commands_served"]))")
        for pipeline in data["pipelines"]?.arrayValue ?? [] {
            lines.append("")
            lines.append(Self.pipeline(pipeline))
        }
        return lines.joined(separator: "\n")
    }

    static func pipeline(_ pipeline: JSONValue) -> String {
        var lines: [String] = []
        let state = pipeline["running"] == .bool(true) ? "running" : "stopped"
        let statistics = pipeline["statistics"]
        lines.append("\(text(pipeline["interface"])): \(state), plugin \(text(pipeline["plugin"])), "
            + "\(text(statistics?["mode"])), XDP \(text(statistics?["attach_mode"])) (program \(text(statistics?["program_id"])))")
        if let reason = pipeline["stop_reason"]?.stringValue {
            lines.append("stopped because \(reason)")
        }
        if let warning = pipeline["unread_added_queues"]?.stringValue {
            lines.append("warning: \(warning)")
        }
        let totals = pipeline["totals"], rates = pipeline["rates"]
        var rows: [[String]] = [["", "RX PACKETS", "RX BYTES", "PKT/S", "BYTES/S", "KERNEL DROP", "RING FULL",
                                 "HANDOFF DROP", "DROPPED", "MALFORMED"]]
        rows.append(["total", text(totals?["rx_packets"]), text(totals?["rx_bytes"]), rate(rates?["rx_packets"]),
                     rate(rates?["rx_bytes"]), text(totals?["kernel_dropped"]), text(totals?["ring_full"]),
                     text(totals?["handoff_drops"]), text(totals?["dropped"]), text(totals?["malformed"])])
        for socket in statistics?["sockets"]?.arrayValue ?? [] {
            let mode = socket["zero_copy"] == .bool(true) ? "zc" : "copy"
            rows.append(["ch \(text(socket["channel"])) → q \(text(socket["queue"])) \(mode)",
                         text(socket["rx_packets"]), text(socket["rx_bytes"]), "", "",
                         text(socket["kernel"]?["rx_dropped"]), text(socket["kernel"]?["rx_ring_full"]),
                         text(socket["handoff_drops"]), text(socket["dropped"]), text(socket["malformed"])])
        }
        lines.append(Render.table(rows))
        // Why a socket runs in copy mode when zero-copy was asked for (bind_mode "auto").
        for socket in statistics?["sockets"]?.arrayValue ?? [] {
            if let reason = socket["fallback_reason"]?.stringValue {
                lines.append("ch \(text(socket["channel"])) → q \(text(socket["queue"])) copy: \(reason)")
            }
        }
        for module in pipeline["modules"]?.arrayValue ?? [] {
            let counters = (module["counters"]?.objectValue ?? [:]).sorted { $0.key < $1.key }
                .map { "\($0.key) \(text($0.value))" }.joined(separator: ", ")
            lines.append("module \(text(module["kind"])): \(counters)")
            let moduleRows = module["rows"]?.arrayValue ?? []
            if let first = moduleRows.first?.objectValue, !first.isEmpty, module["kind"] == "count" {
                let columns = ["src", "sport", "dst", "dport", "proto", "packets", "bytes"].filter { first[$0] != nil }
                var table = [columns.map { $0.uppercased() }]
                for row in moduleRows { table.append(columns.map { text(row[$0]) }) }
                lines.append(Render.table(table).split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
            }
        }
        return lines.joined(separator: "\n")
    }

    private static func rate(_ value: JSONValue?) -> String {
        // Whole rates arrive as integers ("0", not "0.0").
        let number: Double
        switch value {
        case .double(let double)?: number = double
        case .int(let int)?: number = Double(int)
        case .uint(let uint)?: number = Double(uint)
        default: return "-"
        }
        return number >= 1_000_000 ? "\((number / 100_000).rounded() / 10)M"
            : number >= 1000 ? "\((number / 100).rounded() / 10)k" : "\(number)"
    }
}
