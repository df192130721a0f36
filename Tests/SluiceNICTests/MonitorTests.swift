import Foundation
import SluiceNIC
import SluiceTestSupport
import Synchronization
import XCTest

/// Outside changes: the ethtool monitor group and rtnetlink link events,
/// and the controller noticing a value it set being changed by someone else.
final class MonitorTests: VethTestCase {
    final class Events: Sendable {
        private let events = Mutex<[NICEvent]>([])
        func append(_ event: NICEvent) { events.withLock { $0.append(event) } }
        func first(where predicate: (NICEvent) -> Bool) -> NICEvent? { events.withLock { $0.first(where: predicate) } }
    }

    func testEthtoolAndLinkEventsArrive() throws {
        let events = Events()
        let monitor = try NICMonitor { events.append($0) }
        defer { monitor.stop() }
        let device = lab.device
        _ = try lab.ethtool("-L", device, "rx", "2")
        let channels = try waitFor("a channels notification for \(device)") {
            events.first { $0.kind == .channels && $0.interface == device && $0.channels?.rx == 2 }
        }
        XCTAssertEqual(channels.channels?.maxRX, 4)
        XCTAssertEqual(channels.index, if_nametoindex(device))

        _ = try lab.ethtool("-K", device, "gro", "on")
        _ = try waitFor("a features notification") { events.first { $0.kind == .features && $0.interface == device } }

        try SluiceTestSupport.run(["ip", "link", "set", device, "up"], check: true)
        _ = try waitFor("a link-up event") { events.first { $0.kind == .link && $0.interface == device && $0.up == true } }

        try SluiceTestSupport.run(["ip", "link", "del", device], check: true)
        _ = try waitFor("a link-removed event") { events.first { $0.kind == .linkRemoved && $0.interface == device } }
    }

    func testControllerNoticesAValueChangedBehindItsBack() throws {
        let state = NSTemporaryDirectory() + uniqueName("sluice-state")
        defer { try? FileManager.default.removeItem(atPath: state) }
        let controller = try NICController(stateDirectory: state)
        try controller.startMonitoring()
        defer { controller.stopMonitoring() }
        _ = try controller.setChannels(lab.device, ChannelsChange(rx: 2))
        XCTAssertEqual(controller.outsideChanges(lab.device), [], "Sluice's own change is not an outside change")

        _ = try lab.ethtool("-L", lab.device, "rx", "3")
        let expected = "\(lab.device) channels are rx 3, not rx 2 as Sluice set"
        try waitUntil("the controller to notice") { controller.outsideChanges(lab.device) == [expected] }

        XCTAssertEqual(controller.restoreAll().with(.changedOutside).count, 1)
        XCTAssertEqual(try lab.ethtoolChannels()["rx"], 3)
    }
}
