import Foundation
import SluiceControl
import SluiceTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// NIC control through the real daemon on a real lab veth, with `ethtool`
/// as the oracle: journal, crash recovery, restore, outside changes, errors.
final class NICDaemonTests: LabDaemonTestCase {
    override class var labPrefix: String { "snic" }

    private func ethtoolChannels() throws -> (rx: Int, tx: Int) {
        let text = try runCommand(["ethtool", "-l", app], check: true).stdout
        let current = text.components(separatedBy: "Current hardware settings:").last ?? ""
        func value(_ key: String) -> Int {
            current.split(separator: "\n").first { $0.hasPrefix(key + ":") }
                .flatMap { Int($0.split(separator: "\t").last?.trimmingCharacters(in: .whitespaces) ?? "") } ?? -1
        }
        return (value("RX"), value("TX"))
    }

    private func ethtoolFeature(_ name: String) throws -> String {
        let text = try runCommand(["ethtool", "-k", app], check: true).stdout
        let line = text.split(separator: "\n").first { $0.hasPrefix(name + ":") } ?? ""
        return line.contains(": on") ? "on" : "off"
    }

    private func ok(_ reply: JSONValue, file: StaticString = #filePath, line: UInt = #line) -> JSONValue {
        XCTAssertEqual(reply["ok"], true, reply.serialized(), file: file, line: line)
        return reply["result"] ?? .null
    }

    func testCrashThenRestartRestoresTheOriginalValues() throws {
        XCTAssertEqual(try ethtoolChannels().rx, 4)
        let groOriginal = try ethtoolFeature("generic-receive-offload")
        try daemon.start()
        let channels = ok(try daemon.call("channels.set", ["iface": .string(app), "rx": 2]))
        XCTAssertEqual(channels["value"]?["rx"], 2)
        XCTAssertNotNil(channels["backend"]?.stringValue)
        _ = ok(try daemon.call("features.set", ["iface": .string(app), "features": ["gro": .bool(groOriginal == "off")]]))
        XCTAssertEqual(try ethtoolChannels().rx, 2)
        XCTAssertNotEqual(try ethtoolFeature("generic-receive-offload"), groOriginal)

        daemon.signal(SIGKILL)
        try daemon.waitForExit()
        XCTAssertEqual(try ethtoolChannels().rx, 2, "nothing restores a killed daemon's changes but the next start")

        try daemon.start()
        XCTAssertEqual(try ethtoolChannels().rx, 4)
        XCTAssertEqual(try ethtoolFeature("generic-receive-offload"), groOriginal)
        XCTAssertTrue(daemon.log().contains("restored NIC changes left by a previous run"), daemon.log())
        daemon.signal(SIGTERM)
        XCTAssertEqual(try daemon.waitForExit(), 0)
        XCTAssertEqual(try ethtoolChannels().rx, 4, "nothing restored twice")
    }

    func testGracefulStopRestoresAndLeavesOutsideChangesAlone() throws {
        try daemon.start()
        _ = ok(try daemon.call("channels.set", ["iface": .string(app), "rx": 2, "tx": 3]))
        XCTAssertEqual(try ethtoolChannels().rx, 2)
        // Someone else changes tx behind Sluice's back.
        try runCommand(["ethtool", "-L", app, "tx", "1"], check: true)
        let shutdown = try runCommand([DaemonProcess.sluicectlPath, "shutdown", "--socket", daemon.socketPath])
        XCTAssertEqual(shutdown.status, 0, shutdown.description)
        XCTAssertEqual(try daemon.waitForExit(), 0)
        let after = try ethtoolChannels()
        XCTAssertEqual(after.tx, 1, "a value changed outside Sluice is not overwritten")
        XCTAssertTrue(daemon.log().contains("changed_outside=1") || daemon.log().contains("changed outside"), daemon.log())
    }

    func testOutsideChangeIsReportedWhileRunning() throws {
        try daemon.start()
        _ = ok(try daemon.call("channels.set", ["iface": .string(app), "rx": 2]))
        try runCommand(["ethtool", "-L", app, "rx", "3"], check: true)
        let reported = try waitFor("nic.show to report the outside change") { () -> [JSONValue]? in
            let changes = try daemon.call("nic.show", ["iface": .string(app)])["result"]?["outside_changes"]?.arrayValue
            return (changes?.isEmpty ?? true) ? nil : changes
        }
        XCTAssertTrue(reported.first?.stringValue?.contains(app) ?? false, "\(reported)")
        XCTAssertTrue(daemon.log().contains(app), daemon.log())
    }

    func testErrorsNameTheInterfaceTheDriverAndTheLimit() throws {
        try daemon.start()
        let missing = try daemon.call("channels.get", ["iface": "nosuch0"])
        XCTAssertEqual(missing["error"]?["code"], "not_found")
        XCTAssertTrue(missing["error"]?["message"]?.stringValue?.contains("nosuch0") ?? false, missing.serialized())

        let rings = try daemon.call("rings.set", ["iface": .string(app), "rx": 256])
        XCTAssertEqual(rings["error"]?["code"], "unsupported", rings.serialized())
        let message = rings["error"]?["message"]?.stringValue ?? ""
        XCTAssertTrue(message.contains("veth") && message.contains("ring"), message)

        let tooMany = try daemon.call("channels.set", ["iface": .string(app), "rx": 9])
        XCTAssertEqual(tooMany["error"]?["code"], "invalid_argument")
        XCTAssertTrue(tooMany["error"]?["message"]?.stringValue?.contains("exceeds the maximum 4 for \(app)") ?? false,
                      tooMany.serialized())

        let ntuple = try daemon.call("steer.add", ["iface": .string(app), "flow_type": "udp4", "dst_port": 4242, "queue": 1])
        XCTAssertEqual(ntuple["error"]?["code"], "unsupported")
        XCTAssertTrue(ntuple["error"]?["message"]?.stringValue?.contains("veth") ?? false, ntuple.serialized())
        XCTAssertEqual(try daemon.call("steer.add", ["iface": .string(app), "flow_type": "udp4"])["error"]?["code"],
                       "invalid_argument", "needs exactly one of queue, channel, drop")
        XCTAssertEqual(try daemon.call("channels.set", ["iface": "../etc", "rx": 1])["error"]?["code"], "invalid_argument")
        XCTAssertTrue(daemon.isRunning)
    }

    func testSteeringByChannelUsesThePluginsQueue() throws {
        // The test plugin maps channel i to queue i + 2, as old mlx5 with 2 channels does.
        try plugins.compile(testPluginSource, as: "libsluice_veth_test.so")
        try daemon.start()
        // 4 rx queues, channels 0 and 1 in use: their queues are 2 and 3.
        for channel in 0..<2 {
            let explain = ok(try daemon.call("plugins.explain", ["iface": .string(app), "channel": JSONValue(channel)]))
            XCTAssertEqual(explain["selection"]?["plugin"]?["name"], "veth_test")
            let mapping = try XCTUnwrap(explain["mappings"]?.arrayValue?.first)
            XCTAssertEqual(mapping["channel"], JSONValue(channel))
            XCTAssertEqual(mapping["bind_queue"], JSONValue(channel + 2))
            XCTAssertEqual(mapping["xskmap_key"], JSONValue(channel + 2))
            XCTAssertEqual(mapping["steer_queue"], JSONValue(channel + 2))
        }
        // Channel 2 would be queue 4, which this veth does not have: refused, naming the plugin.
        let beyond = try daemon.call("plugins.explain", ["iface": .string(app), "channel": 2])
        XCTAssertEqual(beyond["ok"], false)
        XCTAssertTrue(beyond["error"]?["message"]?.stringValue?.contains("veth_test") ?? false, beyond.serialized())
        for channel in 0..<2 {
            let steer = ok(try daemon.call("steer.add", [
                "iface": .string(app), "flow_type": "udp4", "dst_port": 4242, "channel": JSONValue(channel),
                "dry_run": true,
            ]))
            XCTAssertEqual(steer["channel"], JSONValue(channel))
            XCTAssertEqual(steer["queue"], JSONValue(channel + 2))
            XCTAssertEqual(steer["ethtool_command"],
                           .string("ethtool -N \(app) flow-type udp4 dst-port 4242 action \(channel + 2)"))
        }
    }

    func testConfigForcesAPluginPerInterface() throws {
        try plugins.compile(testPluginSource, as: "libsluice_veth_test.so")
        daemon.stop()
        daemon = try DaemonProcess(extraConfig: """
            [plugins]
            dir = "\(plugins.path)"

            [[interface]]
            name = "\(app)"
            plugin = "generic"
            """)
        try daemon.start()
        let explain = ok(try daemon.call("plugins.explain", ["iface": .string(app), "channel": 1]))
        XCTAssertEqual(explain["selection"]?["plugin"]?["name"], "generic", "config beats veth_test's higher score")
        XCTAssertEqual(explain["selection"]?["forced"], true)
        XCTAssertEqual(explain["mappings"]?.arrayValue?.first?["bind_queue"], 1)
        let steer = ok(try daemon.call("steer.add", [
            "iface": .string(app), "flow_type": "udp4", "dst_port": 9, "channel": 1, "dry_run": true,
        ]))
        XCTAssertEqual(steer["queue"], 1)
        // A request may still name another plugin explicitly.
        let asked = ok(try daemon.call("plugins.explain", ["iface": .string(app), "channel": 1, "plugin": "veth_test"]))
        XCTAssertEqual(asked["mappings"]?.arrayValue?.first?["bind_queue"], 3)
    }

    func testWhatIfExplainForOldAndNewMlx5() throws {
        try daemon.start()
        let old = ok(try daemon.call("plugins.explain", [
            "driver": "mlx5_core", "kernel_release": "5.15.0-91-generic", "channels": 4, "sysfs_rx_queues": 8,
            "channel": 2,
        ]))
        XCTAssertEqual(old["selection"]?["plugin"]?["name"], "mlx5")
        XCTAssertEqual(old["mappings"]?.arrayValue?.first?["bind_queue"], 6)
        XCTAssertEqual(old["mappings"]?.arrayValue?.first?["xskmap_key"], 6)
        XCTAssertEqual(old["mappings"]?.arrayValue?.first?["steer_queue"], 6)
        let new = ok(try daemon.call("plugins.explain", [
            "driver": "mlx5_core", "kernel_release": "6.8.0", "channels": 4, "sysfs_rx_queues": 4, "channel": 2,
        ]))
        XCTAssertEqual(new["mappings"]?.arrayValue?.first?["bind_queue"], 2)
        let listed = ok(try daemon.call("plugins.list"))
        let names = listed["plugins"]?.arrayValue?.compactMap { $0["plugin"]?["name"]?.stringValue } ?? []
        XCTAssertEqual(Set(names), ["generic", "mlx5"])
    }

    func testRejectedPluginsAreListedWithTheirReasonsAndTheDaemonCarriesOn() throws {
        // One good test plugin and the broken variants, each compiled with cc.
        try plugins.compile(testPluginSource, as: "libsluice_veth_test.so")
        let variants: [(file: String, defines: [String], reason: String)] = [
            ("libsluice_badabi.so", ["PLUGIN_ABI=2", "PLUGIN_NAME=\"badabi\""], "abi_version 2 is not supported"),
            ("libsluice_small.so", ["PLUGIN_SZ=8", "PLUGIN_NAME=\"small\""], "smaller than the v1 size"),
            ("libsluice_noentry.so", ["NO_ENTRY", "PLUGIN_NAME=\"noentry\""], "no symbol sluice_driver_plugin_v1"),
            ("libsluice_zdup.so", ["PLUGIN_NAME=\"generic\""], "duplicate name 'generic'"),
        ]
        for variant in variants {
            try plugins.compile(testPluginSource, as: variant.file, defines: variant.defines)
        }
        try daemon.start()
        let listed = ok(try daemon.call("plugins.list"))
        let records = listed["plugins"]?.arrayValue ?? []
        for variant in variants {
            let record = records.first { $0["path"]?.stringValue?.hasSuffix("/" + variant.file) ?? false }
            XCTAssertEqual(record?["status"], "rejected", variant.file)
            XCTAssertTrue(record?["reason"]?.stringValue?.contains(variant.reason) ?? false,
                          "\(variant.file): \(record?.serialized() ?? "missing")")
        }
        let loaded = Set(records.filter { $0["status"] == "loaded" }.compactMap { $0["plugin"]?["name"]?.stringValue })
        XCTAssertEqual(loaded, ["generic", "mlx5", "veth_test"])
        // The good test plugin outscores generic on the lab's veth.
        let explain = ok(try daemon.call("plugins.explain", ["iface": .string(app), "channel": 0]))
        XCTAssertEqual(explain["selection"]?["plugin"]?["name"], "veth_test")
        let scores = explain["selection"]?["scores"]?.arrayValue ?? []
        XCTAssertTrue(scores.contains { $0["plugin"] == "generic" && $0["score"] == 1 }, "\(scores)")

        // Without it (removed, then reloaded), generic is chosen again.
        unlink(plugins.file("libsluice_veth_test.so"))
        XCTAssertEqual(try daemon.call("plugins.reload")["ok"], true)
        let fallback = ok(try daemon.call("plugins.explain", ["iface": .string(app), "channel": 0]))
        XCTAssertEqual(fallback["selection"]?["plugin"]?["name"], "generic")
        XCTAssertTrue(daemon.isRunning)
    }

    func testWorldWritablePluginDirectoryIsRefusedWithItsReason() throws {
        chmod(plugins.path, 0o777)
        try daemon.start()
        let listed = ok(try daemon.call("plugins.list"))
        let records = listed["plugins"]?.arrayValue ?? []
        XCTAssertFalse(records.isEmpty)
        for record in records {
            XCTAssertEqual(record["status"], "rejected")
            XCTAssertTrue(record["reason"]?.stringValue?.contains("world-writable") ?? false, record.serialized())
        }
        // Nothing to choose from: a clear not_found, and the daemon stays up.
        let explain = try daemon.call("plugins.explain", ["iface": .string(app)])
        XCTAssertEqual(explain["error"]?["code"], "not_found", explain.serialized())
        chmod(plugins.path, 0o755)
        XCTAssertEqual(try daemon.call("plugins.reload")["ok"], true)
        XCTAssertEqual(ok(try daemon.call("plugins.explain", ["iface": .string(app), "channel": 0]))["selection"]?["plugin"]?["name"],
                       "generic")
    }
}
