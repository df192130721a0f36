import Foundation
import SluiceNIC
import SluiceProtocol
import SluiceSystem
import SluiceTestSupport
import XCTest

/// NICController: journal first, then change; restore on stop, recovery
/// after a crash, values changed behind Sluice's back left alone.
final class JournalTests: VethTestCase {
    var stateDirectory: String!

    override func setUpWithError() throws {
        try super.setUpWithError()
        stateDirectory = NSTemporaryDirectory() + uniqueName("sluice-state")
    }

    override func tearDown() {
        super.tearDown()
        if let stateDirectory { try? FileManager.default.removeItem(atPath: stateDirectory) }
    }

    var journalPath: String { stateDirectory + "/nic-journal.json" }

    func testCrashedRunIsRestoredAtNextStartAndReported() throws {
        let groBefore = try XCTUnwrap(lab.ethtoolFeatures()["generic-receive-offload"])
        do {
            let controller = try NICController(stateDirectory: stateDirectory)
            XCTAssertEqual(try controller.setChannels(lab.device, ChannelsChange(rx: 2)).value.rx, 2)
            _ = try controller.setFeatures(lab.device, ["generic-receive-offload": !groBefore])
            XCTAssertEqual(controller.journalEntries.count, 2)
            // Dropped without restoreAll: what a kill -9 leaves behind.
        }
        XCTAssertEqual(try lab.ethtoolChannels()["rx"], 2)
        XCTAssertEqual(try lab.ethtoolFeatures()["generic-receive-offload"], !groBefore)
        let shown = try NICController(stateDirectory: stateDirectory).details(lab.device)
        XCTAssertEqual(shown.changes.count, 2, "nic.show lists the pending changes")
        XCTAssertEqual(shown.channels?.value.rx, 2)
        XCTAssertEqual(shown.problems, [NICError.unsupported(interface: lab.device, driver: "veth", operation: .ringsGet).description])
        let journal = try String(contentsOfFile: journalPath, encoding: .utf8)
        XCTAssertTrue(journal.contains(try XCTUnwrap(KernelFiles.bootID())), "journal records the boot id")

        let next = try NICController(stateDirectory: stateDirectory)
        let report = next.recoverAtStartup()
        XCTAssertEqual(report.kind, .restored)
        XCTAssertEqual(report.restore?.with(.restored).count, 2, "\(report)")
        XCTAssertEqual(report.restore?.failures, [])
        XCTAssertTrue(report.message.contains("restored 2 of 2"), report.message)
        XCTAssertEqual(try lab.ethtoolChannels()["rx"], 4)
        XCTAssertEqual(try lab.ethtoolFeatures()["generic-receive-offload"], groBefore)
        XCTAssertFalse(FileManager.default.fileExists(atPath: journalPath))
        // Nothing is restored twice.
        XCTAssertEqual(try NICController(stateDirectory: stateDirectory).recoverAtStartup().kind, .nothing)
    }

    /// Busy polling's companions in /sys/class/net/IF: journaled like an
    /// ethtool change, restored alone when a pipeline stops, and after a crash.
    func testDeviceSettingsAreRestoredAloneAndAfterACrash() throws {
        let device = try InterfaceName(lab.device)
        let napiBefore = try NetworkDevice.setting(device, .napiDeferHardIRQs)
        let groBefore = try NetworkDevice.setting(device, .groFlushTimeout)
        let controller = try NICController(stateDirectory: stateDirectory)
        XCTAssertEqual(try controller.setChannels(lab.device, ChannelsChange(rx: 2)).value.rx, 2)
        try controller.setDeviceSetting(lab.device, .napiDeferHardIRQs, to: napiBefore + 3)
        try controller.setDeviceSetting(lab.device, .groFlushTimeout, to: 1000)
        try controller.setDeviceSetting(lab.device, .groFlushTimeout, to: groBefore + 150_000)
        XCTAssertEqual(controller.journalEntries.count, 3, "the two writes of gro_flush_timeout coalesce")
        XCTAssertEqual(try NetworkDevice.setting(device, .napiDeferHardIRQs), napiBefore + 3)
        XCTAssertEqual(try NetworkDevice.setting(device, .groFlushTimeout), groBefore + 150_000)

        let report = controller.restoreDeviceSettings(lab.device)
        XCTAssertEqual(report.with(.restored).count, 2, "\(report)")
        XCTAssertEqual(report.outcomes.first?.message, "\(lab.device) gro_flush_timeout restored to \(groBefore)")
        XCTAssertEqual(try NetworkDevice.setting(device, .napiDeferHardIRQs), napiBefore)
        XCTAssertEqual(try NetworkDevice.setting(device, .groFlushTimeout), groBefore)
        XCTAssertEqual(controller.journalEntries.map(\.change), [.channels(original: ChannelsChange(rx: 4), applied: ChannelsChange(rx: 2))],
                       "the other changes stay journaled")

        try controller.setDeviceSetting(lab.device, .napiDeferHardIRQs, to: napiBefore + 2)
        // Dropped without restoreAll: what a kill -9 leaves behind.
        XCTAssertTrue(try String(contentsOfFile: journalPath, encoding: .utf8).contains("\"napi_defer_hard_irqs\""))
        let recovered = try NICController(stateDirectory: stateDirectory).recoverAtStartup()
        XCTAssertEqual(recovered.kind, .restored)
        XCTAssertEqual(recovered.restore?.with(.restored).count, 2, "\(recovered)")
        XCTAssertEqual(try NetworkDevice.setting(device, .napiDeferHardIRQs), napiBefore)
        XCTAssertEqual(try lab.ethtoolChannels()["rx"], 4)
        XCTAssertFalse(FileManager.default.fileExists(atPath: journalPath))
    }

    func testMissingDeviceSettingFileIsAnErrorNamingIt() throws {
        let controller = try NICController(stateDirectory: stateDirectory)
        XCTAssertThrowsError(try controller.setDeviceSetting("nosuchdev0", .groFlushTimeout, to: 1)) {
            XCTAssertTrue("\($0)".contains("/sys/class/net/nosuchdev0/gro_flush_timeout"), "\($0)")
        }
        XCTAssertEqual(controller.journalEntries, [])
    }

    func testGracefulRestoreUndoesEverythingNewestFirstAndCoalesces() throws {
        let controller = try NICController(stateDirectory: stateDirectory)
        _ = try controller.setChannels(lab.device, ChannelsChange(rx: 2))
        _ = try controller.setChannels(lab.device, ChannelsChange(rx: 3, tx: 1))
        _ = try controller.setFeatures(lab.device, ["tso": false])
        let tso = try FeatureNames.resolve("tso", available: controller.features(lab.device).value.features.map(\.name),
                                           interface: lab.device)
        XCTAssertGreaterThanOrEqual(tso.count, 4)
        XCTAssertEqual(controller.journalEntries.count, 1 + tso.count, "one channels entry, one per tso member")
        XCTAssertEqual(try lab.ethtoolChannels()["tx"], 1)
        XCTAssertEqual(try lab.ethtoolFeatures()["tcp-segmentation-offload"], false)

        let report = controller.restoreAll()
        XCTAssertEqual(report.with(.restored).count, 1 + tso.count, "\(report)")
        XCTAssertEqual(report.outcomes.last?.message, "\(lab.device) channels restored to rx 4, tx 4", "oldest last")
        XCTAssertEqual(try lab.ethtoolChannels()["rx"], 4)
        XCTAssertEqual(try lab.ethtoolChannels()["tx"], 4)
        XCTAssertEqual(try lab.ethtoolFeatures()["tcp-segmentation-offload"], true)
        XCTAssertEqual(controller.journalEntries, [])
        XCTAssertFalse(FileManager.default.fileExists(atPath: journalPath))
        XCTAssertEqual(controller.restoreAll().outcomes, [], "nothing restored twice")
    }

    func testValueChangedBehindSluicesBackIsReportedNotOverwritten() throws {
        let controller = try NICController(stateDirectory: stateDirectory)
        _ = try controller.setChannels(lab.device, ChannelsChange(rx: 2))
        _ = try controller.setFeatures(lab.device, ["gro": true])
        _ = try lab.ethtool("-L", lab.device, "rx", "3")

        let report = controller.restoreAll()
        let outside = report.with(.changedOutside)
        XCTAssertEqual(outside.count, 1, "\(report)")
        XCTAssertEqual(outside.first?.message,
                       "\(lab.device) channels are rx 3, not rx 2 as Sluice set: changed outside Sluice since; left as is")
        XCTAssertEqual(report.with(.restored).count, 1)
        XCTAssertEqual(try lab.ethtoolChannels()["rx"], 3, "not overwritten")
        XCTAssertEqual(try lab.ethtoolFeatures()["generic-receive-offload"], false, "gro restored")
    }

    func testJournalFromAnEarlierBootIsReportedAndDiscarded() throws {
        do {
            let controller = try NICController(stateDirectory: stateDirectory)
            _ = try controller.setChannels(lab.device, ChannelsChange(rx: 1))
        }
        let bootID = try XCTUnwrap(KernelFiles.bootID())
        let text = try String(contentsOfFile: journalPath, encoding: .utf8)
        try text.replacingOccurrences(of: bootID, with: "00000000-0000-0000-0000-000000000000")
            .write(toFile: journalPath, atomically: true, encoding: .utf8)

        let report = try NICController(stateDirectory: stateDirectory).recoverAtStartup()
        XCTAssertEqual(report.kind, .discardedEarlierBoot)
        XCTAssertEqual(report.journalBootID, "00000000-0000-0000-0000-000000000000")
        XCTAssertEqual(report.discarded.count, 1)
        XCTAssertNil(report.restore)
        XCTAssertEqual(try lab.ethtoolChannels()["rx"], 1, "not replayed")
        XCTAssertFalse(FileManager.default.fileExists(atPath: journalPath))
    }

    /// A journal as daemons before the typed wire wrote it (camelCase keys,
    /// "bootID", "ruleAdded", "sourceMAC"): read exactly as it always was.
    func testJournalInTheCamelCaseFormatOfEarlierDaemonsIsRead() throws {
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        try #"""
            {
              "bootID" : "00000000-0000-0000-0000-000000000000",
              "entries" : [
                {"change" : {"channels" : {"applied" : {"rx" : 2}, "original" : {"rx" : 4}}}, "interface" : "eth9", "sequence" : 1},
                {"change" : {"rings" : {"applied" : {"rxJumbo" : 64, "rxMini" : 32}, "original" : {"rxJumbo" : 128, "rxMini" : 0}}},
                 "interface" : "eth9", "sequence" : 2},
                {"change" : {"feature" : {"applied" : false, "name" : "rx-gro", "original" : true}}, "interface" : "eth9", "sequence" : 3},
                {"change" : {"ruleAdded" : {"location" : 5, "rule" : {"action" : 2, "destinationPort" : 4242,
                  "destinationPortMask" : 65280, "flowType" : "udp4", "location" : 5, "sourceAddress" : "10.0.0.1",
                  "sourceAddressMask" : "255.255.255.0"}}}, "interface" : "eth9", "sequence" : 4},
                {"change" : {"ruleDeleted" : {"location" : 7, "rule" : {"action" : "drop", "etherType" : 2048, "flowType" : "ether",
                  "destinationMAC" : "02:00:00:00:00:02", "sourceMAC" : "02:00:00:00:00:01", "vlan" : 100, "vlanMask" : 4095}}},
                 "interface" : "eth9", "sequence" : 5},
                {"change" : {"flowHash" : {"applied" : "sd", "flowType" : "udp4", "original" : "sdfn"}}, "interface" : "eth9", "sequence" : 6},
                {"change" : {"rss" : {"applied" : [0, 1], "original" : [1, 0]}}, "interface" : "eth9", "sequence" : 7}
              ],
              "format" : 1,
              "nextSequence" : 8
            }
            """#.write(toFile: journalPath, atomically: true, encoding: .utf8)
        let report = try NICController(stateDirectory: stateDirectory).recoverAtStartup()
        XCTAssertEqual(report.kind, .discardedEarlierBoot, report.message)
        XCTAssertEqual(report.journalBootID, "00000000-0000-0000-0000-000000000000")
        let changes: [JournaledChange] = [
            .channels(original: ChannelsChange(rx: 4), applied: ChannelsChange(rx: 2)),
            .rings(original: RingsChange(rxMini: 0, rxJumbo: 128), applied: RingsChange(rxMini: 32, rxJumbo: 64)),
            .feature(name: "rx-gro", original: true, applied: false),
            .ruleAdded(location: 5, rule: NtupleRule(
                flowType: .udp4, sourceAddress: "10.0.0.1", sourceAddressMask: "255.255.255.0",
                destinationPort: 4242, destinationPortMask: 0xFF00, action: .queue(2), location: 5)),
            .ruleDeleted(location: 7, rule: NtupleRule(
                flowType: .ether, sourceMAC: "02:00:00:00:00:01", destinationMAC: "02:00:00:00:00:02", etherType: 0x0800,
                vlan: 100, vlanMask: 0x0FFF, action: .drop)),
            .flowHash(flowType: .udp4, original: try FlowHashFields(letters: "sdfn"), applied: try FlowHashFields(letters: "sd")),
            .rss(original: [1, 0], applied: [0, 1]),
        ]
        XCTAssertEqual(report.discarded, changes.enumerated().map {
            JournalEntry(sequence: UInt64($0.offset + 1), interface: "eth9", change: $0.element)
        })
    }

    func testUnreadableJournalIsMovedAsideAndReported() throws {
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        try "{ not json".write(toFile: journalPath, atomically: true, encoding: .utf8)
        let report = try NICController(stateDirectory: stateDirectory).recoverAtStartup()
        XCTAssertEqual(report.kind, .unreadable)
        XCTAssertTrue(FileManager.default.fileExists(atPath: journalPath + ".unreadable"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: journalPath))
    }

    func testRangeErrorsAndRefusedChangesLeaveNoJournal() throws {
        let controller = try NICController(stateDirectory: stateDirectory)
        XCTAssertThrowsError(try controller.setChannels(lab.device, ChannelsChange(rx: 9))) {
            XCTAssertEqual($0 as? NICError, .invalidArgument("rx 9 exceeds the maximum 4 for \(lab.device)"))
        }
        // Within the maximum but refused by the kernel: the journal entry
        // written first is taken back.
        XCTAssertThrowsError(try controller.setChannels(lab.device, ChannelsChange(rx: 0))) {
            guard case NICError.kernel(.channelsSet, _, EINVAL, _)? = $0 as? NICError else {
                return XCTFail("expected EINVAL from the kernel, got \($0)")
            }
        }
        // A fixed feature: nothing is sent, and the error says it is fixed.
        XCTAssertThrowsError(try controller.setFeatures(lab.device, ["ntuple": true])) {
            guard case NICError.featuresNotApplied(let result)? = $0 as? NICError else {
                return XCTFail("expected featuresNotApplied, got \($0)")
            }
            XCTAssertEqual(result.notApplied.map(\.message),
                           ["requested ntuple (rx-ntuple-filter) on; it is fixed off on \(lab.device) ([fixed] in ethtool -k)"])
        }
        let missing = uniqueName("nosuch")
        XCTAssertThrowsError(try controller.setChannels(missing, ChannelsChange(rx: 1))) {
            XCTAssertEqual($0 as? NICError, .notFound(interface: missing))
        }
        XCTAssertEqual(controller.journalEntries, [])
        XCTAssertFalse(FileManager.default.fileExists(atPath: journalPath))
        XCTAssertEqual(try lab.ethtoolChannels()["rx"], 4)
    }

    func testSteeringOnVethDryRunWorksAndRealAddIsUnsupported() throws {
        let controller = try NICController(stateDirectory: stateDirectory)
        let rule = NtupleRule(flowType: .udp4, destinationAddress: "10.9.0.2", destinationPort: 4791, action: .queue(2))
        let dry = try controller.addRule(lab.device, rule, dryRun: true)
        XCTAssertTrue(dry.dryRun)
        XCTAssertEqual(dry.ethtoolCommand, "ethtool -N \(lab.device) flow-type udp4 dst-ip 10.9.0.2 dst-port 4791 action 2")
        var placed = rule
        placed.location = 9
        XCTAssertEqual(try controller.addRule(lab.device, placed, dryRun: true).ethtoolCommand,
                       "ethtool -N \(lab.device) flow-type udp4 dst-ip 10.9.0.2 dst-port 4791 action 2 loc 9")
        XCTAssertThrowsError(try controller.addRule(lab.device, rule)) {
            XCTAssertEqual($0 as? NICError, .unsupported(interface: lab.device, driver: "veth", operation: .ntupleAdd))
        }
        XCTAssertThrowsError(try controller.deleteRule(lab.device, location: 1)) {
            XCTAssertEqual($0 as? NICError, .unsupported(interface: lab.device, driver: "veth", operation: .ntupleDelete))
        }
        XCTAssertThrowsError(try controller.setFlowHash(lab.device, flowType: .udp4, fields: try FlowHashFields(letters: "sdfn"))) {
            XCTAssertEqual($0 as? NICError, .unsupported(interface: lab.device, driver: "veth", operation: .flowHashGet))
        }
        XCTAssertEqual(controller.journalEntries, [])
    }

    /// The ethtool program itself parses the rendered lines: on veth it gets
    /// past the argument parser and fails only at the ioctl.
    func testEthtoolAcceptsTheRenderedArguments() throws {
        let rules = [
            NtupleRule(flowType: .udp4, sourceAddress: "10.0.0.1", destinationAddress: "10.0.0.2",
                       sourcePort: 1, destinationPort: 2, action: .queue(2), location: 5),
            NtupleRule(flowType: .ip4, destinationAddress: "192.168.0.0", destinationAddressMask: "255.255.255.0",
                       action: .drop, location: 1),
            NtupleRule(flowType: .tcp6, sourceAddress: "2001:db8::1", destinationPort: 443, vlan: 7, vlanMask: 0x0FFF,
                       action: .queue(1), location: 0),
            NtupleRule(flowType: .ether, destinationMAC: "02:00:00:00:00:01", etherType: 0x88F7, action: .queue(3), location: 2),
        ]
        for rule in rules {
            let args = rule.ethtoolArguments(location: rule.location)
            let result = try SluiceTestSupport.run(["ethtool", "-N", lab.device] + args)
            // ethtool 6.1 exits 0 here; what it prints tells how far it got.
            let output = result.stdout + result.stderr
            XCTAssertTrue(output.contains("Cannot insert RX class rule: Operation not supported"), "\(args): \(output)")
            for complaint in ["unrecognized", "Invalid", "invalid syntax", "bad command line"] {
                XCTAssertFalse(output.contains(complaint), "\(args): \(output)")
            }
        }
    }
}
