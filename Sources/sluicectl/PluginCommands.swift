import ArgumentParser
import SluiceControl

struct PluginsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins", abstract: "Driver-quirk plugins: list, reload, explain the choice and queue mapping.",
        subcommands: [List.self, Reload.self, Explain.self])

    /// Accepts --socket/--json before the subcommand, as ``NICCommand/connection``.
    @OptionGroup(visibility: .hidden) var connection: ConnectionOptions

    /// `plugins list` and `plugins reload` answer with the same listing.
    static func listing(_ listing: PluginListing) -> String {
        var rows = [["NAME", "VERSION", "STATUS", "PATH", "REASON"]]
        for record in listing.plugins {
            var status = record.status.rawValue
            if record.leases > 0 { status += " (\(record.leases) in use)" }
            rows.append([text(record.plugin?.name), text(record.plugin?.version), status, text(record.path), text(record.reason)])
        }
        return "Plugin directory: \(listing.directory)\n" + Render.table(rows)
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Plugin files: loaded, or rejected with the reason.")
        @OptionGroup var connection: ConnectionOptions

        func run() throws {
            let listing = try connection.call(Methods.PluginsList.self)
            if !connection.json { print(PluginsCommand.listing(listing)) }
        }
    }

    struct Reload: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rescan the plugin directory (refused while a pipeline uses a plugin).")
        @OptionGroup var connection: ConnectionOptions

        func run() throws {
            let listing = try connection.call(Methods.PluginsReload.self)
            if !connection.json { print(PluginsCommand.listing(listing)) }
        }
    }

    struct Explain: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Which plugin handles an interface and why, and per channel the bind queue, steer queue and XSKMAP key.",
            discussion: """
                Give an interface, or a what-if machine: `plugins explain --driver mlx5_core --kernel 5.15.0 \
                --channels 4 --sysfs-rx-queues 8 --channel 2`.
                """)
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Interface to explain (leave out for a what-if).", transform: InterfaceName.argument)
        var interface: InterfaceName?
        @Option(help: "What-if: driver name, e.g. mlx5_core.") var driver: String?
        @Option(help: "What-if: kernel release, e.g. 5.15.0-91-generic (default: this kernel).") var kernel: String?
        @Option(help: "What-if: combined channel count.") var channels: UInt32?
        @Option(name: .customLong("sysfs-rx-queues"), help: "What-if: rx-* entries in sysfs (0: unknown).")
        var sysfsRxQueues: UInt32?
        @Option(help: "Explain only this channel.") var channel: UInt32?
        @Option(help: "Force this plugin instead of the best score.") var plugin: String?

        func validate() throws {
            let whatIf = driver != nil || kernel != nil || channels != nil || sysfsRxQueues != nil
            if interface != nil {
                guard !whatIf else {
                    throw ValidationError(
                        "--driver, --kernel, --channels and --sysfs-rx-queues are for a what-if; leave out the interface")
                }
            } else {
                guard let driver, !driver.isEmpty, let channels else {
                    throw ValidationError("give an interface, or --driver and --channels for a what-if")
                }
                guard driver.utf8.count <= 64 else { throw ValidationError("--driver must be at most 64 characters") }
                guard (1...65_536).contains(channels) else { throw ValidationError("--channels must be 1...65536") }
            }
            if let kernel, kernel.isEmpty || kernel.utf8.count > 64 {
                throw ValidationError("--kernel must be a release of 1-64 characters, e.g. 5.15.0")
            }
            if let sysfsRxQueues, sysfsRxQueues > 65_536 { throw ValidationError("--sysfs-rx-queues must be 0...65536") }
            if let plugin, plugin.isEmpty || plugin.utf8.count > 64 {
                throw ValidationError("--plugin must be a plugin name of 1-64 characters")
            }
        }

        func run() throws {
            let explanation = try connection.call(Methods.PluginsExplain.self, .init(
                iface: interface, driver: driver, kernelRelease: kernel, channels: channels,
                sysfsRxQueues: sysfsRxQueues, channel: channel, plugin: plugin))
            if !connection.json { print(try ExplanationText.render(explanation)) }
        }
    }
}

/// `plugins explain`: the choice, the scores, the facts, the mapping and the
/// requirements, each under its own heading.
enum ExplanationText {
    static func render(_ explanation: Methods.PluginsExplain.Response) throws -> String {
        let facts = explanation.facts, selection = explanation.selection, chosen = selection.plugin
        let subject = facts.synthetic
            ? "what-if \(text(facts.driver)) on kernel \(text(facts.kernelRelease))"
            : "\(text(facts.interface)) (driver \(text(facts.driver)))"
        var lines = [
            "Plugin for \(subject): \(text(chosen.name)) \(text(chosen.version))" + (selection.forced ? " (forced)" : ""),
            "  path: \(text(chosen.path))",
            "  why:  \(text(selection.why))",
            "",
            "Scores:",
        ]
        let scores = [["PLUGIN", "SCORE", "REASON"]] + selection.scores.map { [text($0.plugin), "\($0.score)", text($0.reason)] }
        lines.append(indented(Render.table(scores)))
        lines += ["", "Facts:", Render.keyValues(try JSONValue(encoding: facts), indent: "  ")]
        lines += ["", "Mapping:"]
        let mapping = [["CHANNEL", "BIND-QUEUE", "STEER-QUEUE", "XSKMAP-KEY", "MESSAGE"]] + explanation.mappings.map {
            ["\($0.channel)", "\($0.bindQueue)", "\($0.steerQueue)", "\($0.xskmapKey)", $0.message]
        }
        lines.append(indented(Render.table(mapping)))
        lines += ["", "Requirements:"] + requirements(explanation.preparation).map { "  " + $0 }
        return lines.joined(separator: "\n")
    }

    /// The plugin's prepare() answer in words; "none" when it asks for nothing.
    static func requirements(_ preparation: Preparation) -> [String] {
        let flags: [(Bool, String)] = [
            (preparation.needsNtuple, "turn on rx-ntuple-filter (ntuple)"),
            (preparation.steeringRequired, "only steered traffic reaches the AF_XDP queues: add steer rules"),
            (preparation.excludeFromRSS, "keep the AF_XDP channels out of RSS, or pass other traffic in XDP"),
            (preparation.combinedChannels, "AF_XDP queues come from combined channels only"),
            (preparation.copyModeOnly, "no zero-copy: sockets run in copy mode"),
        ]
        var lines = flags.filter(\.0).map(\.1)
        if preparation.minXskmapEntries > 0 { lines.append("XSKMAP with at least \(preparation.minXskmapEntries) entries") }
        if preparation.unknownFlags != 0 {
            lines.append("requirement bits this Sluice does not know: 0x\(String(preparation.unknownFlags, radix: 16))")
        }
        if !preparation.message.isEmpty { lines.append(preparation.message) }
        return lines.isEmpty ? ["none"] : lines
    }

    static func indented(_ block: String) -> String {
        block.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }.joined(separator: "\n")
    }
}
