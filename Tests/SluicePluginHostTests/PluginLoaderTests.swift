import Foundation
import SluicePluginHost
import SluiceProtocol
import SluiceSystem
import SluiceTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class PluginLoaderTests: XCTestCase {
    private var directory: PluginDirectory!

    override func setUpWithError() throws {
        directory = try PluginDirectory()
        try directory.installBuilt("libsluice_generic.so")
    }

    override func tearDown() {
        directory?.remove()
    }

    private func record(_ records: [PluginRecord], _ fileName: String) throws -> PluginRecord {
        try XCTUnwrap(records.first { $0.path == directory.file(fileName) }, "no record for \(fileName) in \(records)")
    }

    func testCompiledPluginIsChosenOverGenericByScore() throws {
        try directory.compile(testPluginSource, as: "libsluice_veth_test.so")
        let host = directory.host()
        let records = host.list()
        XCTAssertEqual(records.map(\.status), [.loaded, .loaded], "\(records)")
        let loaded = try record(records, "libsluice_veth_test.so")
        XCTAssertEqual(loaded.plugin?.name, "veth_test")
        XCTAssertEqual(loaded.plugin?.version, "0.1")
        XCTAssertEqual(loaded.plugin?.hooks, ["match", "map_channel"])

        let selection = try host.select(vethFacts())
        XCTAssertEqual(selection.plugin.name, "veth_test")
        XCTAssertFalse(selection.forced)
        XCTAssertEqual(selection.scores.map(\.plugin), ["veth_test", "generic"])
        XCTAssertEqual(selection.scores.map(\.score), [50, 1])
        XCTAssertEqual(selection.scores[0].reason, "test plugin for veth on sl-veth0")
        XCTAssertEqual(selection.why, "'veth_test' has the highest score (50) over 'generic' (1) for driver 'veth'")

        // Another driver: the test plugin scores 0 and generic wins.
        var other = vethFacts()
        other.driver = "ixgbe"
        XCTAssertEqual(try host.select(other).plugin.name, "generic")
    }

    func testChannelMapsToQueuePlusTwoEverywhere() throws {
        try directory.compile(testPluginSource, as: "libsluice_veth_test.so")
        let host = directory.host()
        let explanation = try host.explain(vethFacts(rxQueues: 4), channels: [0, 1])
        XCTAssertEqual(explanation.selection.plugin.name, "veth_test")
        XCTAssertEqual(explanation.mappings.map(\.bindQueue), [2, 3])
        XCTAssertEqual(explanation.mappings.map(\.steerQueue), [2, 3])
        XCTAssertEqual(explanation.mappings.map(\.xskmapKey), [2, 3])
        XCTAssertEqual(explanation.mappings[1].message, "channel 1 is served by queue 3")
        XCTAssertEqual(explanation.preparation, .none)

        // A lease computes the same ids.
        let lease = try host.acquire(vethFacts(rxQueues: 4))
        defer { lease.release() }
        XCTAssertEqual(try lease.mapChannel(1, facts: vethFacts(rxQueues: 4)).steerQueue, 3)

        // Channel 2 would need queue 4, which a 4-queue veth does not have.
        XCTAssertThrowsError(try host.explain(vethFacts(rxQueues: 4), channels: [2])) { error in
            XCTAssertEqual(
                error as? PluginHostError,
                .invalidResult(plugin: "veth_test", hook: "map_channel",
                               message: "channel 2 maps to bind queue 4, but sl-veth0 has only 4 rx queues"))
        }
    }

    func testBrokenPluginsAreRejectedWithTheirOwnReason() throws {
        let variants: [(file: String, defines: [String], reason: String)] = [
            ("libsluice_abi2.so", ["PLUGIN_NAME=\"abi2\"", "PLUGIN_ABI=2"],
             "abi_version 2 is not supported (host speaks 1)"),
            ("libsluice_small.so", ["PLUGIN_NAME=\"small\"", "PLUGIN_SZ=8"],
             "struct size 8 is smaller than the v1 size 72"),
            ("libsluice_noentry.so", ["NO_ENTRY"], "no symbol sluice_driver_plugin_v1"),
            ("libsluice_null.so", ["RETURN_NULL"], "sluice_driver_plugin_v1() returned NULL"),
            ("libsluice_spaces.so", ["PLUGIN_NAME=\"bad name\""],
             "name 'bad name' may contain only letters, digits, '_', '-' and '.'"),
            ("libsluice_zz_generic.so", ["PLUGIN_NAME=\"generic\""],
             "duplicate name 'generic' (already loaded from \(directory.file("libsluice_generic.so")))"),
        ]
        for variant in variants {
            try directory.compile(testPluginSource, as: variant.file, defines: variant.defines)
        }
        let worldWritable = "libsluice_ww.so"
        try directory.compile(testPluginSource, as: worldWritable, defines: ["PLUGIN_NAME=\"ww\""])
        chmod(directory.file(worldWritable), 0o666)
        symlink(directory.file("libsluice_generic.so"), directory.file("libsluice_link.so"))
        try "not an ELF object".write(toFile: directory.file("libsluice_text.so"), atomically: true, encoding: .utf8)
        chmod(directory.file("libsluice_text.so"), 0o644)
        // Not a plugin file name: ignored, not listed.
        try "notes".write(toFile: directory.file("README.txt"), atomically: true, encoding: .utf8)

        let host = directory.host()
        let records = host.list()
        for variant in variants {
            let rejected = try record(records, variant.file)
            XCTAssertEqual(rejected.status, .rejected, variant.file)
            XCTAssertEqual(rejected.reason, variant.reason, variant.file)
            XCTAssertNil(rejected.plugin)
        }
        XCTAssertEqual(
            try record(records, worldWritable).reason,
            "file \(directory.file(worldWritable)) is world-writable (mode 666)")
        XCTAssertEqual(
            try record(records, "libsluice_link.so").reason, "is a symbolic link; install the plugin file itself")
        let text = try XCTUnwrap(record(records, "libsluice_text.so").reason)
        XCTAssertTrue(text.hasPrefix("dlopen failed: \(directory.file("libsluice_text.so")): "), text)
        XCTAssertNil(records.first { $0.path.hasSuffix("README.txt") })
        XCTAssertEqual(records.filter { $0.status == .loaded }.compactMap(\.plugin?.name), ["generic"])

        // The host carries on: generic handles the veth.
        XCTAssertEqual(try host.select(vethFacts()).plugin.name, "generic")
        XCTAssertEqual(try host.explain(vethFacts(), channels: [3]).mappings[0].bindQueue, 3)
    }

    func testFileNotOwnedByRootIsRejectedWhenRunningAsRoot() throws {
        try Privilege.require("root (the ownership check applies only to a root host)")
        try directory.compile(testPluginSource, as: "libsluice_nobody.so")
        XCTAssertEqual(chown(directory.file("libsluice_nobody.so"), 65534, 65534), 0)
        let host = directory.host()
        XCTAssertEqual(
            try record(host.list(), "libsluice_nobody.so").reason,
            "file \(directory.file("libsluice_nobody.so")) is owned by uid 65534, not root")
        XCTAssertEqual(try host.select(vethFacts()).plugin.name, "generic")
    }

    /// The template builds with the README's command and works as shipped.
    func testTemplatePluginBuildsAndLoads() throws {
        let template = repositoryRoot.appendingPathComponent("Plugins-src/template/plugin.c").path
        try directory.compile(try String(contentsOfFile: template, encoding: .utf8), as: "libsluice_example.so")
        let host = directory.host()
        var facts = vethFacts()
        facts.driver = "example_nic"
        facts.channels = ChannelCounts(combined: 2)
        let explanation = try host.explain(facts)
        XCTAssertEqual(explanation.selection.plugin.name, "example")
        XCTAssertEqual(explanation.selection.plugin.hooks, ["match", "map_channel", "prepare", "check_channels_change"])
        XCTAssertEqual(explanation.mappings.map(\.bindQueue), [0, 1])
        XCTAssertTrue(explanation.preparation.combinedChannels)
        XCTAssertEqual(
            explanation.preparation.message,
            "example_nic takes AF_XDP queues from combined channels, so set them with `ethtool -L sl-veth0 combined N`.")
    }

    func testWorldWritableDirectoryRejectsEveryPlugin() throws {
        try directory.compile(testPluginSource, as: "libsluice_veth_test.so")
        XCTAssertEqual(chmod(directory.path, 0o777), 0)
        let host = directory.host()
        let records = host.list()
        XCTAssertEqual(records.count, 2)
        for record in records {
            XCTAssertEqual(record.status, .rejected)
            XCTAssertEqual(record.reason, "directory \(directory.path) is world-writable")
        }
        XCTAssertThrowsError(try host.select(vethFacts())) { error in
            XCTAssertEqual(
                error as? PluginHostError,
                .noMatchingPlugin(interface: "sl-veth0", driver: "veth", directory: directory.path))
        }
        // Fixing the directory and reloading recovers without a restart.
        XCTAssertEqual(chmod(directory.path, 0o755), 0)
        try host.reload()
        XCTAssertEqual(try host.select(vethFacts()).plugin.name, "veth_test")
    }

    func testMissingDirectoryIsReportedNotFatal() throws {
        let missing = directory.path + "/nope"
        let host = PluginHost(directory: missing, logger: .init(label: "test"))
        XCTAssertEqual(host.list().count, 1)
        XCTAssertEqual(host.list().first?.path, missing)
        XCTAssertEqual(
            host.list().first?.reason, "cannot read plugin directory \(missing): No such file or directory")
    }

    func testReloadWhileLeasedIsBusyAndSucceedsAfterRelease() throws {
        let host = directory.host()
        XCTAssertEqual(try host.select(vethFacts()).plugin.name, "generic")
        let lease = try host.acquire(vethFacts())
        XCTAssertEqual(lease.plugin.name, "generic")
        XCTAssertEqual(host.list().first?.leases, 1)

        try directory.compile(testPluginSource, as: "libsluice_veth_test.so")
        XCTAssertThrowsError(try host.reload()) { error in
            XCTAssertEqual(error as? PluginHostError, .busy(leases: ["generic": 1]))
            XCTAssertEqual((error as? PluginHostError)?.controlErrorCode, "busy")
        }
        // Nothing changed: the new file is not loaded yet, the lease still works.
        XCTAssertEqual(host.list().count, 1)
        XCTAssertEqual(try lease.mapChannel(3, facts: vethFacts()).bindQueue, 3)

        lease.release()
        lease.release() // idempotent
        XCTAssertThrowsError(try lease.mapChannel(0, facts: vethFacts())) { error in
            XCTAssertEqual(error as? PluginHostError, .leaseReleased(plugin: "generic"))
        }
        let records = try host.reload()
        XCTAssertEqual(records.compactMap(\.plugin?.name), ["generic", "veth_test"])
        XCTAssertEqual(try host.select(vethFacts()).plugin.name, "veth_test")
    }

    /// dlopen hands back an object already loaded under the same path even
    /// after the file was replaced; the host must not pass old code off as new.
    func testReplacedFileIsNotConfusedWithTheCopyStillInUse() throws {
        try directory.compile(testPluginSource, as: "libsluice_veth_test.so")
        let host = directory.host()
        var lease: PluginLease? = try host.acquire(vethFacts())
        XCTAssertEqual(lease?.plugin.version, "0.1")
        lease?.release() // released, but the object (and its code) is still alive

        try directory.compile(
            testPluginSource, as: "libsluice_veth_test.so", defines: ["PLUGIN_VERSION=\"0.2\""])
        let records = try host.reload()
        XCTAssertEqual(
            try record(records, "libsluice_veth_test.so").reason,
            "an older copy of this file is still loaded by a pipeline; reload again after it stops")
        XCTAssertEqual(lease?.plugin.version, "0.1")

        lease = nil
        let reloaded = try host.reload()
        XCTAssertEqual(try record(reloaded, "libsluice_veth_test.so").plugin?.version, "0.2")
        XCTAssertEqual(try host.select(vethFacts()).plugin.version, "0.2")
    }

    func testDroppedLeaseReleasesItself() throws {
        let host = directory.host()
        do {
            _ = try host.acquire(vethFacts())
        }
        XCTAssertNoThrow(try host.reload())
    }

    func testForcedPlugin() throws {
        try directory.compile(testPluginSource, as: "libsluice_veth_test.so")
        let host = directory.host()
        let selection = try host.select(vethFacts(), forced: "generic")
        XCTAssertEqual(selection.plugin.name, "generic")
        XCTAssertTrue(selection.forced)
        XCTAssertEqual(selection.why, "config forces 'generic' for sl-veth0 (its score is 1)")
        XCTAssertEqual(try host.explain(vethFacts(), channels: [1], forced: "generic").mappings[0].bindQueue, 1)

        XCTAssertThrowsError(try host.select(vethFacts(), forced: "nope")) { error in
            XCTAssertEqual(
                error as? PluginHostError,
                .forcedPluginUnavailable(
                    name: "nope", interface: "sl-veth0",
                    detail: "no loaded plugin has that name (loaded: generic, veth_test)"))
        }
    }

    func testGenericRefusesChannelsTheInterfaceDoesNotHave() throws {
        let host = directory.host()
        XCTAssertEqual(try host.explain(vethFacts(rxQueues: 4)).mappings.map(\.bindQueue), [0, 1, 2, 3])
        XCTAssertThrowsError(try host.explain(vethFacts(rxQueues: 4), channels: [4])) { error in
            XCTAssertEqual(
                error as? PluginHostError,
                .hookRefused(
                    plugin: "generic", hook: "map_channel",
                    message: "Channel 4 does not exist on sl-veth0: queue ids must be below its 4 receive channels."))
        }
        let preparation = try host.explain(vethFacts(), channels: [0]).preparation
        XCTAssertTrue(preparation.copyModeOnly)
        XCTAssertEqual(
            preparation.message,
            "veth has no zero-copy AF_XDP and no ntuple steering, so sockets run in copy mode and traffic follows the sender's queue choice (XPS).")
    }

    func testBadFactsAreRefusedNamingTheField() throws {
        let host = directory.host()
        var facts = vethFacts()
        facts.interface = "../../etc"
        XCTAssertThrowsError(try host.select(facts)) { error in
            XCTAssertEqual(
                error as? PluginHostError,
                .invalidFacts("interface name \"../../etc\" contains '/', ':', whitespace or NUL"))
        }
        facts = vethFacts()
        facts.driver = String(repeating: "x", count: 40)
        XCTAssertThrowsError(try host.explain(facts)) { error in
            XCTAssertEqual(
                error as? PluginHostError,
                .invalidFacts("driver '\(facts.driver)' is 40 bytes; the plugin ABI allows 31"))
        }
        let huge = DriverFacts.synthetic(
            driver: "mlx5_core", kernelRelease: "5.15.0", channels: .max, sysfsRxQueues: 8)
        XCTAssertThrowsError(try host.explain(huge, channels: [0])) { error in
            XCTAssertEqual(error as? PluginHostError, .invalidFacts("combined channels 4294967295 exceeds 65536"))
        }
        XCTAssertThrowsError(try host.explain(vethFacts(), channels: Array(0..<2000))) { error in
            XCTAssertEqual(error as? PluginHostError, .invalidFacts("2000 channels requested; at most 1024 at once"))
        }
    }

    func testSysfsQueueCountsOfLoopback() throws {
        // The loopback device exists in every namespace and has one queue each way.
        let counts = try NetworkDevice.queueCounts(InterfaceName("lo"))
        XCTAssertEqual(counts.rx, 1)
        XCTAssertEqual(counts.tx, 1)
        let facts = try DriverFacts.gather(interface: "lo", driver: "", channels: ChannelCounts())
        XCTAssertEqual(facts.sysfsRxQueues, 1)
        XCTAssertEqual(facts.kernelRelease, try SluiceTestSupport.run(["uname", "-r"], check: true).stdout.trimmingCharacters(in: .whitespacesAndNewlines))

        XCTAssertThrowsError(try DriverFacts.gather(interface: "sl-absent0", driver: "", channels: ChannelCounts())) { error in
            guard case .sysfsUnreadable(let interface, let path, let cause)? = error as? PluginHostError else {
                return XCTFail("unexpected \(error)")
            }
            XCTAssertEqual(interface, "sl-absent0")
            XCTAssertEqual(path, "/sys/class/net/sl-absent0/queues")
            XCTAssertEqual(cause.errno.rawValue, ENOENT)
        }
    }
}
