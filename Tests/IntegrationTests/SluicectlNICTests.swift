import Foundation
import SluiceModules
import SluiceTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// `sluicectl` NIC and plugin commands against the real daemon on a real
/// lab veth, with `ethtool` as the oracle for what changed.
final class SluicectlNICTests: LabDaemonTestCase {
    override class var labPrefix: String { "sctl" }

    override func setUpWithError() throws {
        try super.setUpWithError()
        try daemon.start()
    }

    /// Runs sluicectl against the test daemon.
    private func sluicectl(_ arguments: String...) throws -> CommandResult {
        try runCommand([DaemonProcess.sluicectlPath] + arguments + ["--socket", daemon.socketPath])
    }

    private func succeeded(_ result: CommandResult, file: StaticString = #filePath, line: UInt = #line) -> [String] {
        XCTAssertEqual(result.status, 0, result.description, file: file, line: line)
        return result.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }

    /// "RX:\t\t4" under `section` of `ethtool -l`-shaped text.
    private func count(_ label: String, in text: String, section: String) -> String? {
        let part = text.components(separatedBy: section).dropFirst().first ?? ""
        return part.split(separator: "\n").first { $0.hasPrefix(label + ":") }
            .map { $0.dropFirst(label.count + 1).trimmingCharacters(in: .whitespaces) }
    }

    func testChannelsGetHasTheShapeOfEthtoolAndSetAgreesWithEthtool() throws {
        let lines = succeeded(try sluicectl("channels", "get", app))
        XCTAssertEqual(lines.first, "Channel parameters for \(app):")
        let text = lines.joined(separator: "\n")
        let ethtool = try runCommand(["ethtool", "-l", app], check: true).stdout
        for section in ["Pre-set maximums:", "Current hardware settings:"] {
            XCTAssertTrue(text.contains(section), text)
            for label in ["RX", "TX", "Other", "Combined"] {
                XCTAssertEqual(count(label, in: text, section: section), count(label, in: ethtool, section: section),
                               "\(section) \(label)\nsluicectl:\n\(text)\nethtool:\n\(ethtool)")
            }
        }
        XCTAssertEqual(count("RX", in: text, section: "Current hardware settings:"), "4")
        XCTAssertTrue(["(via netlink)", "(via ioctl)"].contains(lines.last { !$0.isEmpty } ?? ""), text)

        let set = succeeded(try sluicectl("channels", "set", app, "--rx", "2", "--tx", "3"))
        XCTAssertEqual(count("RX", in: set.joined(separator: "\n"), section: "Current hardware settings:"), "2")
        let after = try runCommand(["ethtool", "-l", app], check: true).stdout
        XCTAssertEqual(count("RX", in: after, section: "Current hardware settings:"), "2", after)
        XCTAssertEqual(count("TX", in: after, section: "Current hardware settings:"), "3", after)

        let tooMany = try sluicectl("channels", "set", app, "--rx", "9")
        XCTAssertEqual(tooMany.status, 1, tooMany.description)
        XCTAssertTrue(tooMany.stderr.contains("exceeds the maximum 4 for \(app)"), tooMany.stderr)
        let nothing = try sluicectl("channels", "set", app)
        XCTAssertEqual(nothing.status, 2, "no count given is a usage error: \(nothing.description)")
        let negative = try sluicectl("channels", "set", app, "--rx", "-1")
        XCTAssertEqual(negative.status, 2, negative.description)
    }

    func testFeaturesSetAgreesWithEthtoolAndGetShowsKernelNames() throws {
        func ethtoolGRO() throws -> String {
            let text = try runCommand(["ethtool", "-k", app], check: true).stdout
            let line = text.split(separator: "\n").first { $0.hasPrefix("generic-receive-offload:") } ?? ""
            return line.contains(": on") ? "on" : "off"
        }
        let wanted = try ethtoolGRO() == "on" ? "off" : "on"
        let set = succeeded(try sluicectl("features", "set", app, "gro", wanted))
        XCTAssertTrue(set.contains("rx-gro: \(wanted)"), set.joined(separator: "\n"))
        XCTAssertEqual(try ethtoolGRO(), wanted)

        let get = succeeded(try sluicectl("features", "get", app))
        XCTAssertEqual(get.first, "Features for \(app):")
        XCTAssertTrue(get.contains("rx-gro: \(wanted)"), get.joined(separator: "\n"))
        // veth cannot change its VLAN challenged flag: ethtool marks it [fixed] too.
        XCTAssertTrue(get.contains("vlan-challenged: off [fixed]"), get.joined(separator: "\n"))

        let odd = try sluicectl("features", "set", app, "gro")
        XCTAssertEqual(odd.status, 2, odd.description)
        let notOnOff = try sluicectl("features", "set", app, "gro", "yes")
        XCTAssertEqual(notOnOff.status, 2, notOnOff.description)
        XCTAssertTrue(notOnOff.stderr.contains("gro"), notOnOff.stderr)
    }

    func testSteerDryRunByChannelPrintsTheEthtoolLine() throws {
        let lines = succeeded(try sluicectl("steer", "add", app, "flow-type", "udp4", "dst-port", "4242", "channel", "1",
                                             "--dry-run"))
        XCTAssertTrue(lines.contains("ethtool -N \(app) flow-type udp4 dst-port 4242 action 1"), lines.joined(separator: "\n"))
        XCTAssertTrue(lines.contains("\tDest port: 4242 mask: 0x0"), lines.joined(separator: "\n"))
        XCTAssertTrue(lines.contains { $0.hasPrefix("Channel 1: steer queue 1, bind queue 1, XSKMAP key 1") },
                      lines.joined(separator: "\n"))

        // ethtool's `m` (ignored bits) becomes the daemon's must-match mask and back.
        let masked = succeeded(try sluicectl("steer", "add", app, "flow-type", "udp4", "dst-ip", "10.1.2.3",
                                              "m", "0.0.0.255", "dst-port", "53", "m", "0xff", "action", "2", "--dry-run"))
        XCTAssertTrue(
            masked.contains("ethtool -N \(app) flow-type udp4 dst-ip 10.1.2.3 m 0.0.0.255 dst-port 53 m 0x00ff action 2"),
            masked.joined(separator: "\n"))

        let real = try sluicectl("steer", "add", app, "flow-type", "udp4", "dst-port", "4242", "action", "1")
        XCTAssertEqual(real.status, 1, real.description)
        XCTAssertTrue(real.stderr.contains("veth"), real.stderr)

        for bad in [["flow-type", "udp4", "dst-port", "4242"], ["flow-type", "udp4", "action", "1", "channel", "1"],
                    ["flow-type", "udp9", "action", "1"], ["flow-type", "udp4", "dst-port", "70000", "action", "1"],
                    ["flow-type", "udp4", "colour", "red", "action", "1"]] {
            let result = try runCommand([DaemonProcess.sluicectlPath, "steer", "add", app] + bad
                + ["--dry-run", "--socket", daemon.socketPath])
            XCTAssertEqual(result.status, 2, result.description)
        }
    }

    func testStatsMatchEthtoolAndShowAndRestoreReportSluicesChanges() throws {
        // Without XDP nothing moves these counters: both reads see the same values.
        let stats = succeeded(try sluicectl("nic", "stats", app))
        let ethtool = try runCommand(["ethtool", "-S", app], check: true).stdout
            .split(separator: "\n").map(String.init)
        XCTAssertEqual(Array(stats.prefix(ethtool.count)), ethtool)
        XCTAssertTrue(stats.contains("     rx queue 3:"), stats.joined(separator: "\n"))

        _ = succeeded(try sluicectl("channels", "set", app, "--rx", "2"))
        let show = succeeded(try sluicectl("nic", "show", app)).joined(separator: "\n")
        XCTAssertTrue(show.hasPrefix("Interface \(app) (index \(if_nametoindex(app)))"), show)
        XCTAssertTrue(show.contains("Channel parameters for \(app):"), show)
        XCTAssertTrue(show.contains("veth does not support ring parameters"), show)
        XCTAssertTrue(show.contains("channels rx 4 -> 2"), show)

        let restore = succeeded(try sluicectl("nic", "restore"))
        let row = restore.first { $0.hasPrefix("restored ") }?.split(separator: " ", omittingEmptySubsequences: true)
        XCTAssertEqual(row?.dropFirst().first.map(String.init), app, restore.joined(separator: "\n"))
        let after = try runCommand(["ethtool", "-l", app], check: true).stdout
        XCTAssertEqual(count("RX", in: after, section: "Current hardware settings:"), "4", after)
        XCTAssertEqual(succeeded(try sluicectl("nic", "restore")).first,
                       "Nothing to restore: Sluice has no NIC changes on record.")
    }

    func testJSONPrintsTheRawReplyOnly() throws {
        let result = try sluicectl("channels", "get", app, "--json")
        XCTAssertEqual(result.status, 0, result.description)
        let lines = result.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, result.stdout)
        XCTAssertTrue(lines.first?.hasPrefix("{") ?? false, result.stdout)
        XCTAssertTrue(result.stdout.contains("\"max_rx\":4"), result.stdout)
    }

    func testListItemsCarryOneDashEach() throws {
        let lines = succeeded(try sluicectl("call", "plugins.list"))
        let items = lines.filter { $0.hasPrefix("  - ") }
        XCTAssertEqual(items.count, 2, lines.joined(separator: "\n"))
        XCTAssertTrue(items.allSatisfy { $0.hasPrefix("  - leases:") }, lines.joined(separator: "\n"))
        XCTAssertTrue(lines.contains { $0.hasPrefix("    path:") }, lines.joined(separator: "\n"))
        XCTAssertFalse(lines.contains { $0.hasPrefix("  - path:") || $0.hasPrefix("  - status:") },
                       lines.joined(separator: "\n"))
    }

    func testRingsOnVethFailsNamingVethAndRingParameters() throws {
        let result = try sluicectl("rings", "get", app)
        XCTAssertEqual(result.status, 1, result.description)
        XCTAssertTrue(result.stderr.contains("veth"), result.stderr)
        XCTAssertTrue(result.stderr.contains("ring parameters"), result.stderr)
        XCTAssertTrue(result.stdout.isEmpty, result.stdout)
        let unsupportedOnVeth = [
            (["rss", "get", app], "RSS indirection table"), (["flowhash", "get", app, "udp4"], "rx flow hash"),
            (["steer", "list", app], "ntuple"),
        ]
        for (argv, what) in unsupportedOnVeth {
            let unsupported = try runCommand([DaemonProcess.sluicectlPath] + argv + ["--socket", daemon.socketPath])
            XCTAssertEqual(unsupported.status, 1, unsupported.description)
            XCTAssertTrue(unsupported.stderr.contains("veth") && unsupported.stderr.contains(what), unsupported.stderr)
        }
        let badName = try sluicectl("rings", "get", "no/such/interface")
        XCTAssertEqual(badName.status, 2, badName.description)
        XCTAssertTrue(badName.stderr.contains("not a valid interface name"), badName.stderr)
    }

    func testWhatIfExplainForOldMlx5ShowsQueueSix() throws {
        let lines = succeeded(try sluicectl("plugins", "explain", "--driver", "mlx5_core", "--kernel", "5.15.0",
                                             "--channels", "4", "--sysfs-rx-queues", "8", "--channel", "2"))
        let text = lines.joined(separator: "\n")
        XCTAssertTrue(lines.first?.hasPrefix("Plugin for what-if mlx5_core on kernel 5.15.0: mlx5") ?? false, text)
        let header = try XCTUnwrap(lines.firstIndex { $0.contains("CHANNEL") && $0.contains("XSKMAP-KEY") }, text)
        let columns = lines[header + 1].split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        XCTAssertEqual(Array(columns.prefix(4)), ["2", "6", "6", "6"], "channel, bind queue, steer queue, XSKMAP key\n\(text)")
        XCTAssertTrue(text.contains("Scores:") && text.contains("generic"), text)

        let noChannels = try sluicectl("plugins", "explain", "--driver", "mlx5_core")
        XCTAssertEqual(noChannels.status, 2, noChannels.description)
        let mixed = try sluicectl("plugins", "explain", app, "--driver", "mlx5_core")
        XCTAssertEqual(mixed.status, 2, mixed.description)
    }

    func testPluginsListShowsGenericAndMlx5Loaded() throws {
        let lines = succeeded(try sluicectl("plugins", "list"))
        XCTAssertEqual(lines.first, "Plugin directory: \(plugins.path)")
        for name in ["generic", "mlx5"] {
            let row = lines.first { $0.hasPrefix(name + " ") }?.split(separator: " ", omittingEmptySubsequences: true)
            XCTAssertEqual(row?.dropFirst(2).first, "loaded", lines.joined(separator: "\n"))
            XCTAssertTrue(row?.contains { $0 == plugins.file("libsluice_\(name).so") } ?? false, lines.joined(separator: "\n"))
        }
    }

    func testNICListShowsTheVethAndOptionsBeforeTheSubcommandWork() throws {
        let result = try runCommand([DaemonProcess.sluicectlPath, "--socket", daemon.socketPath, "nic", "list"])
        let lines = succeeded(result)
        XCTAssertEqual(lines.first?.split(separator: " ", omittingEmptySubsequences: true),
                       ["NAME", "INDEX", "DRIVER", "RXQ", "TXQ", "STATE", "XDP"])
        let row = try XCTUnwrap(lines.first { $0.hasPrefix(app + " ") }, result.stdout)
        let columns = row.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        XCTAssertEqual(columns[1], String(if_nametoindex(app)))
        XCTAssertEqual(Array(columns[2...4]), ["veth", "4", "4"])
        XCTAssertEqual(columns.last, "-", "no XDP program")
    }

    func testPipelineModulesListsEveryKindWithItsOptionsWithoutTheDaemon() throws {
        let result = try runCommand([DaemonProcess.sluicectlPath, "pipeline", "modules"])
        let lines = succeeded(result)
        for kind in ModuleKind.allCases {
            let descriptor = kind.descriptor
            let start = try XCTUnwrap(lines.firstIndex(of: "\(kind): \(descriptor.summary)"), result.stdout)
            let section = lines[start...].prefix { !$0.isEmpty }
            for option in descriptor.options {
                let row = try XCTUnwrap(section.first { $0.hasPrefix("  \(option.name) ") }, result.stdout)
                let columns = row.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
                XCTAssertEqual(columns[1], option.type.rawValue, row)
                if let range = option.range { XCTAssertEqual(columns[2], "\(range.lowerBound)...\(range.upperBound)", row) }
                XCTAssertEqual(columns[3], option.defaultText ?? "(required)", row)
            }
        }
    }
}
