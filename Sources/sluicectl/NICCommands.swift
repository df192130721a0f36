import ArgumentParser
import SluiceControl
import SluiceProtocol

extension InterfaceName {
    /// An interface name from the command line: a bad one is a usage error
    /// naming the problem, not a daemon round trip.
    static func argument(_ text: String) throws -> InterfaceName {
        do {
            return try InterfaceName(text)
        } catch {
            throw ValidationError("not a valid interface name: \(error)")
        }
    }
}

// MARK: nic

struct NICCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nic", abstract: "Interfaces: list, details, driver statistics, restore Sluice's changes.",
        subcommands: [List.self, Show.self, Statistics.self, Restore.self])

    /// `sluicectl --socket P nic list` moves --socket to after `nic`: accept it
    /// here too (the subcommand reads the same parsed value).
    @OptionGroup(visibility: .hidden) var connection: ConnectionOptions

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List interfaces with driver, queues, link state and XDP.")
        @OptionGroup var connection: ConnectionOptions

        func run() throws {
            let list = try connection.call(Methods.NICList.self)
            if connection.json { return }
            var rows = [["NAME", "INDEX", "DRIVER", "RXQ", "TXQ", "STATE", "XDP"]]
            for interface in list.interfaces {
                rows.append([
                    text(interface.name), String(interface.index), text(interface.driver),
                    String(interface.rxQueues), String(interface.txQueues), text(interface.operState),
                    xdpText(interface.xdp),
                ])
            }
            print(Render.table(rows))
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "One interface: driver, queues, channels, rings, features, Sluice's changes and outside changes.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Interface name, e.g. eth0.", transform: InterfaceName.argument) var interface: InterfaceName

        func run() throws {
            let details = try connection.call(Methods.NICShow.self, .init(iface: interface))
            if !connection.json { print(NICDetailsText.render(details, interface: interface)) }
        }
    }

    struct Statistics: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "stats", abstract: "Driver statistics as ethtool -S, then grouped per queue.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Interface name, e.g. eth0.", transform: InterfaceName.argument) var interface: InterfaceName

        func run() throws {
            let statistics = try connection.call(Methods.NICStatistics.self, .init(iface: interface))
            if !connection.json { print(EthtoolText.statistics(statistics)) }
        }
    }

    struct Restore: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Undo every NIC change Sluice made; values others changed since are left alone.")
        @OptionGroup var connection: ConnectionOptions

        func run() throws {
            let outcomes = try connection.call(Methods.NICRestore.self).outcomes
            if connection.json { return }
            guard !outcomes.isEmpty else {
                print("Nothing to restore: Sluice has no NIC changes on record.")
                return
            }
            var rows = [["STATUS", "INTERFACE", "CHANGE", "MESSAGE"]]
            for outcome in outcomes {
                rows.append([
                    outcome.status.rawValue, text(outcome.interface),
                    outcome.entry.change.summary, text(outcome.message),
                ])
            }
            print(Render.table(rows))
            if outcomes.contains(where: { $0.status == .failed }) {
                throw CommandFailure(status: Exit.commandFailed, message: "nic.restore: some changes could not be restored")
            }
        }
    }
}

func text(_ value: String?) -> String {
    guard let value, !value.isEmpty else { return "-" }
    return value
}

/// "12 (native)" for an attached program, "-" for none.
func xdpText(_ xdp: XDPAttachment?) -> String {
    guard let xdp else { return "-" }
    return "\(xdp.programID) (\(text(xdp.mode)))"
}

/// `nic show`: the parts of `InterfaceDetails`, each in the layout its own
/// command uses.
enum NICDetailsText {
    static func render(_ details: InterfaceDetails, interface: InterfaceName) -> String {
        let info = details.interface
        var lines = [
            "Interface \(info.name) (index \(info.index))",
            "  driver:      \(text(info.driver)) \(text(info.driverVersion))",
            "  firmware:    \(text(info.firmwareVersion))",
            "  bus:         \(text(info.busInfo))",
            "  link:        \(text(info.operState))\(info.up ? ", admin up" : ", admin down")",
            "  mtu:         \(info.mtu)",
            "  mac:         \(text(info.macAddress))",
            "  queues:      rx \(info.rxQueues), tx \(info.txQueues) (sysfs)",
            "  xdp:         \(xdpText(info.xdp))",
        ]
        if let channels = details.channels { lines += ["", EthtoolText.channels(channels, interface: interface)] }
        if let rings = details.rings { lines += ["", EthtoolText.rings(rings, interface: interface)] }
        if let features = details.features { lines += ["", EthtoolText.features(features, interface: interface)] }
        if !details.problems.isEmpty {
            lines += ["", "Not available:"] + details.problems.map { "  - \(text($0))" }
        }
        lines += ["", details.changes.isEmpty ? "Sluice's changes: none" : "Sluice's changes (restored on stop):"]
        lines += details.changes.map { "  #\($0.sequence) \($0.change.summary)" }
        if !details.outsideChanges.isEmpty {
            lines += ["Changed by others since:"] + details.outsideChanges.map { "  - \(text($0))" }
        }
        return lines.joined(separator: "\n")
    }
}

// MARK: channels, rings

struct ChannelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "channels", abstract: "Channel counts, as ethtool -l / -L.", subcommands: [Get.self, Set.self])

    /// Accepts --socket/--json before the subcommand, as ``NICCommand/connection``.
    @OptionGroup(visibility: .hidden) var connection: ConnectionOptions

    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show channel counts and maximums (ethtool -l).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Interface name, e.g. eth0.", transform: InterfaceName.argument) var interface: InterfaceName

        func run() throws {
            let channels = try connection.call(Methods.ChannelsGet.self, .init(iface: interface))
            if !connection.json { print(EthtoolText.channels(channels, interface: interface)) }
        }
    }

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set channel counts (ethtool -L); the driver plugin may refuse while AF_XDP sockets depend on them.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Interface name, e.g. eth0.", transform: InterfaceName.argument) var interface: InterfaceName
        @Option(help: "RX channels.") var rx: UInt32?
        @Option(help: "TX channels.") var tx: UInt32?
        @Option(help: "Other channels.") var other: UInt32?
        @Option(help: "Combined channels.") var combined: UInt32?

        func validate() throws {
            guard rx != nil || tx != nil || other != nil || combined != nil else {
                throw ValidationError("give at least one of --rx, --tx, --other, --combined")
            }
        }

        func run() throws {
            let channels = try connection.call(Methods.ChannelsSet.self, .init(
                iface: interface, rx: rx, tx: tx, other: other, combined: combined))
            if !connection.json { print(EthtoolText.channels(channels, interface: interface)) }
        }
    }
}

struct RingsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rings", abstract: "Ring sizes, as ethtool -g / -G.", subcommands: [Get.self, Set.self])

    /// Accepts --socket/--json before the subcommand, as ``NICCommand/connection``.
    @OptionGroup(visibility: .hidden) var connection: ConnectionOptions

    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show ring sizes and maximums (ethtool -g).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Interface name, e.g. eth0.", transform: InterfaceName.argument) var interface: InterfaceName

        func run() throws {
            let rings = try connection.call(Methods.RingsGet.self, .init(iface: interface))
            if !connection.json { print(EthtoolText.rings(rings, interface: interface)) }
        }
    }

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set ring sizes (ethtool -G).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Interface name, e.g. eth0.", transform: InterfaceName.argument) var interface: InterfaceName
        @Option(help: "RX ring entries.") var rx: UInt32?
        @Option(name: .customLong("rx-mini"), help: "RX mini ring entries.") var rxMini: UInt32?
        @Option(name: .customLong("rx-jumbo"), help: "RX jumbo ring entries.") var rxJumbo: UInt32?
        @Option(help: "TX ring entries.") var tx: UInt32?

        func validate() throws {
            guard rx != nil || rxMini != nil || rxJumbo != nil || tx != nil else {
                throw ValidationError("give at least one of --rx, --rx-mini, --rx-jumbo, --tx")
            }
        }

        func run() throws {
            let rings = try connection.call(Methods.RingsSet.self, .init(
                iface: interface, rx: rx, rxMini: rxMini, rxJumbo: rxJumbo, tx: tx))
            if !connection.json { print(EthtoolText.rings(rings, interface: interface)) }
        }
    }
}

// MARK: features

struct FeaturesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "features", abstract: "Offload features, as ethtool -k / -K.", subcommands: [Get.self, Set.self])

    /// Accepts --socket/--json before the subcommand, as ``NICCommand/connection``.
    @OptionGroup(visibility: .hidden) var connection: ConnectionOptions

    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show offload features (ethtool -k), by their kernel names.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Interface name, e.g. eth0.", transform: InterfaceName.argument) var interface: InterfaceName

        func run() throws {
            let features = try connection.call(Methods.FeaturesGet.self, .init(iface: interface))
            if !connection.json { print(EthtoolText.features(features, interface: interface)) }
        }
    }

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Turn features on or off, as ethtool -K: `features set eth0 gro on ntuple off`.",
            discussion: """
                Names are the kernel's (rx-gro) or ethtool's (gro, generic-receive-offload). \
                Prints the features that changed.
                """)
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Interface name, e.g. eth0.", transform: InterfaceName.argument) var interface: InterfaceName
        @Argument(help: "NAME on|off pairs.") var settings: [String] = []

        /// At most as many pairs as the daemon takes (256).
        func parsedSettings() throws -> [String: Bool] {
            guard !settings.isEmpty, settings.count % 2 == 0 else {
                throw ValidationError("give features as NAME on|off pairs, e.g. `gro on ntuple off`")
            }
            guard settings.count / 2 <= 256 else { throw ValidationError("at most 256 features at a time") }
            var wanted: [String: Bool] = [:]
            for index in stride(from: 0, to: settings.count, by: 2) {
                let name = settings[index], state = settings[index + 1]
                guard !name.isEmpty, name.utf8.count <= 64 else {
                    throw ValidationError("feature name \"\(name.prefix(64))\" must be 1-64 characters")
                }
                guard state == "on" || state == "off" else {
                    throw ValidationError("feature \(name): expected on or off, got \"\(state.prefix(32))\"")
                }
                guard wanted[name] == nil else { throw ValidationError("feature \(name) is given twice") }
                wanted[name] = state == "on"
            }
            return wanted
        }

        func validate() throws {
            _ = try parsedSettings()
        }

        func run() throws {
            let name = interface
            // Read first so the reply can say what actually changed (ethtool -K's "Actual changes").
            let before = connection.json ? nil : try? connection.call(Methods.FeaturesGet.self, .init(iface: name))
            let result = try connection.call(Methods.FeaturesSet.self, .init(iface: name, features: try parsedSettings()))
            if connection.json { return }
            let previous = Dictionary(
                (before?.value.features ?? []).map { ($0.name, $0.active) }, uniquingKeysWith: { first, _ in first })
            let changed = result.value.features.filter { previous[$0.name] != $0.active }
            if changed.isEmpty {
                print("No feature of \(interface) changed (already as requested).")
            } else {
                print((["Actual changes:"] + changed.map(EthtoolText.featureLine)).joined(separator: "\n"))
            }
            print(EthtoolText.backendLine(result.backend))
        }
    }
}

// MARK: flowhash, rss

struct FlowHashCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flowhash", abstract: "Fields hashed for RSS, as ethtool -n/-N IF rx-flow-hash TYPE.",
        subcommands: [Get.self, Set.self])

    /// Accepts --socket/--json before the subcommand, as ``NICCommand/connection``.
    @OptionGroup(visibility: .hidden) var connection: ConnectionOptions

    static func flowType(_ text: String) throws -> HashFlowType {
        guard let type = HashFlowType(rawValue: text) else {
            throw ValidationError(
                "flow type \"\(text.prefix(32))\" is not one of \(HashFlowType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return type
    }

    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the hashed fields (ethtool -n IF rx-flow-hash TYPE).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Interface name, e.g. eth0.", transform: InterfaceName.argument) var interface: InterfaceName
        @Argument(help: "Flow type: tcp4, udp4, tcp6, udp6, ...") var flowType: String

        func validate() throws {
            _ = try FlowHashCommand.flowType(flowType)
        }

        func run() throws {
            let served = try connection.call(Methods.FlowHashGet.self, .init(
                iface: interface, flowType: try FlowHashCommand.flowType(flowType)))
            if !connection.json { print(EthtoolText.flowHash(served, flowType: flowType)) }
        }
    }

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set the hashed fields (ethtool -N IF rx-flow-hash TYPE FIELDS), e.g. `flowhash set eth0 udp4 sdfn`.",
            discussion: """
                Letters: m L2 destination, v VLAN, t L3 protocol, s/d IP source/destination, \
                f/n L4 bytes 0-1/2-3, r discard.
                """)
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Interface name, e.g. eth0.", transform: InterfaceName.argument) var interface: InterfaceName
        @Argument(help: "Flow type: tcp4, udp4, tcp6, udp6, ...") var flowType: String
        @Argument(help: "ethtool letters, e.g. sdfn.") var fields: String

        func validate() throws {
            _ = try FlowHashCommand.flowType(flowType)
            guard !fields.isEmpty, fields.count <= 8, fields.allSatisfy({ "mvtsdfnr".contains($0) }) else {
                throw ValidationError("fields \"\(fields.prefix(32))\" must be letters from m v t s d f n r, e.g. sdfn")
            }
        }

        func run() throws {
            let served = try connection.call(Methods.FlowHashSet.self, .init(
                iface: interface, flowType: try FlowHashCommand.flowType(flowType), fields: fields))
            if !connection.json { print(EthtoolText.flowHash(served, flowType: flowType)) }
        }
    }
}

struct RSSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rss", abstract: "RSS indirection table and hash key, as ethtool -x / -X.",
        subcommands: [Get.self, Set.self])

    /// Accepts --socket/--json before the subcommand, as ``NICCommand/connection``.
    @OptionGroup(visibility: .hidden) var connection: ConnectionOptions

    /// ethtool -x prints the RX ring count, which the table alone does not
    /// tell: take it from the channels, and leave it out when unknown.
    static func rxRings(_ connection: ConnectionOptions, _ interface: InterfaceName) -> UInt64? {
        var quiet = connection
        quiet.json = false
        guard let channels = try? quiet.call(Methods.ChannelsGet.self, .init(iface: interface)).value else { return nil }
        let count = UInt64(channels.rx) + UInt64(channels.combined)
        return count == 0 ? nil : count
    }

    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the indirection table and hash key (ethtool -x).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Interface name, e.g. eth0.", transform: InterfaceName.argument) var interface: InterfaceName

        func run() throws {
            let rss = try connection.call(Methods.RSSGet.self, .init(iface: interface))
            if !connection.json {
                print(EthtoolText.rss(rss, interface: interface, rxRings: RSSCommand.rxRings(connection, interface)))
            }
        }
    }

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set the indirection table (ethtool -X): spread over N queues, or give every entry.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Interface name, e.g. eth0.", transform: InterfaceName.argument) var interface: InterfaceName
        @Option(help: "Spread over queues 0..N-1, as ethtool -X IF equal N.") var equal: UInt32?
        @Option(help: "Every entry, comma-separated (as long as the current table), e.g. 0,1,0,1.") var table: String?

        /// Bounded like the daemon (65536 entries) so a huge argument is a usage error.
        func parsedTable() throws -> [UInt32]? {
            guard let table else { return nil }
            let parts = table.split(separator: ",", omittingEmptySubsequences: false)
            guard parts.count <= 65_536 else { throw ValidationError("--table has more than 65536 entries") }
            return try parts.enumerated().map { index, part in
                guard let queue = UInt32(part) else {
                    throw ValidationError("--table entry \(index) \"\(part.prefix(16))\" is not a queue number")
                }
                return queue
            }
        }

        func validate() throws {
            guard (equal == nil) != (table == nil) else { throw ValidationError("give either --equal N or --table LIST") }
            if let equal, equal == 0 || equal > 65_535 { throw ValidationError("--equal must be 1...65535") }
            _ = try parsedTable()
        }

        func run() throws {
            let rss = try connection.call(
                Methods.RSSSet.self, .init(iface: interface, table: try parsedTable(), equal: equal))
            if !connection.json {
                print(EthtoolText.rss(rss, interface: interface, rxRings: RSSCommand.rxRings(connection, interface)))
            }
        }
    }
}
