import Foundation
import SluiceNIC
import SluiceSystem
import SluiceTestSupport
import XCTest

/// Channels and features through both backends against real veth devices,
/// with the `ethtool` program as the oracle.
final class BackendTests: VethTestCase {
    func testChannelsSetThroughEachBackendReadBackWithEthtool() throws {
        for backend in [BackendChoice.netlink, .ioctl] {
            let ethtool = try Ethtool(backend: backend)
            let before = try ethtool.channels(lab.device)
            XCTAssertEqual(before.backend.rawValue, backend.rawValue)
            XCTAssertEqual(before.value.maxRX, 4)
            let target: UInt32 = backend == .netlink ? 2 : 3
            XCTAssertEqual(try ethtool.setChannels(lab.device, ChannelsChange(rx: target)).rawValue, backend.rawValue)
            XCTAssertEqual(try lab.ethtoolChannels()["rx"], target, "ethtool -l after a \(backend) set")
            XCTAssertEqual(try ethtool.channels(lab.device).value.rx, target)
        }
    }

    func testChannelsSetWithEthtoolReadBackIdenticallyByBothBackends() throws {
        _ = try lab.ethtool("-L", lab.device, "rx", "1", "tx", "3")
        let viaNetlink = try Ethtool(backend: .netlink).channels(lab.device)
        let viaIoctl = try Ethtool(backend: .ioctl).channels(lab.device)
        XCTAssertEqual(viaNetlink.backend, .netlink)
        XCTAssertEqual(viaIoctl.backend, .ioctl)
        XCTAssertEqual(viaNetlink.value, viaIoctl.value)
        XCTAssertEqual(viaNetlink.value.rx, 1)
        XCTAssertEqual(viaNetlink.value.tx, 3)
    }

    func testFeaturesSetThroughEachBackendReadBackWithEthtool() throws {
        for backend in [BackendChoice.netlink, .ioctl] {
            let ethtool = try Ethtool(backend: backend)
            let gro = try XCTUnwrap(ethtool.features(lab.device).value["rx-gro"])
            XCTAssertTrue(gro.changeable)
            let want = !gro.active
            XCTAssertEqual(try ethtool.setFeatures(lab.device, ["rx-gro": want]).rawValue, backend.rawValue)
            XCTAssertEqual(try lab.ethtoolFeatures()["generic-receive-offload"], want)
            XCTAssertEqual(try ethtool.features(lab.device).value["rx-gro"]?.active, want)
        }
    }

    func testFeaturesSetWithEthtoolReadBackIdenticallyByBothBackends() throws {
        _ = try lab.ethtool("-K", lab.device, "gro", "on", "tso", "off")
        let viaNetlink = try Ethtool(backend: .netlink).features(lab.device)
        let viaIoctl = try Ethtool(backend: .ioctl).features(lab.device)
        XCTAssertEqual(viaNetlink.backend, .netlink)
        XCTAssertEqual(viaIoctl.backend, .ioctl)
        XCTAssertEqual(viaNetlink.value, viaIoctl.value)
        XCTAssertEqual(viaNetlink.value["rx-gro"]?.active, true)
        XCTAssertEqual(viaNetlink.value["tx-tcp-segmentation"]?.active, false)
        XCTAssertEqual(viaNetlink.value["rx-lro"]?.changeable, false, "ethtool -k shows lro [fixed] on veth")
    }

    func testAutoPrefersNetlink() throws {
        let ethtool = try Ethtool(backend: .auto)
        XCTAssertEqual(try ethtool.channels(lab.device).backend, .netlink)
        XCTAssertEqual(try ethtool.features(lab.device).backend, .netlink)
    }

    func testWhatVethLacksIsUnsupportedNamingDriverAndOperationFromBothBackends() throws {
        for backend in BackendChoice.allCases {
            let ethtool = try Ethtool(backend: backend)
            let cases: [(NICOperation, () throws -> Void)] = [
                (.ringsGet, { _ = try ethtool.rings(self.lab.device) }),
                (.ringsSet, { try ethtool.setRings(self.lab.device, RingsChange(rx: 128)) }),
                (.ntupleList, { _ = try ethtool.rules(self.lab.device) }),
                (.flowHashGet, { _ = try ethtool.flowHash(self.lab.device, flowType: .udp4) }),
                (.flowHashSet, { try ethtool.setFlowHash(self.lab.device, flowType: .udp4, fields: [.sourceIP]) }),
                (.rssGet, { _ = try ethtool.rss(self.lab.device) }),
                (.rssSet, { try ethtool.setRSS(self.lab.device, indirectionTable: [0, 1]) }),
            ]
            for (operation, body) in cases {
                XCTAssertThrowsError(try body(), "\(operation) via \(backend)") { error in
                    XCTAssertEqual(error as? NICError,
                                   .unsupported(interface: lab.device, driver: "veth", operation: operation))
                    XCTAssertEqual((error as? NICError)?.code, "unsupported")
                }
            }
        }
        let message = NICError.unsupported(interface: lab.device, driver: "veth", operation: .ringsSet).description
        XCTAssertTrue(message.hasPrefix("veth does not support ring parameters (ethtool -G)"), message)
    }

    func testUnknownInterfaceIsNotFoundNamingIt() throws {
        let ethtool = try Ethtool()
        let missing = uniqueName("nosuch")
        XCTAssertThrowsError(try ethtool.channels(missing)) { error in
            XCTAssertEqual(error as? NICError, .notFound(interface: missing))
            XCTAssertEqual((error as? NICError)?.description, "interface \(missing) not found")
        }
        XCTAssertThrowsError(try ethtool.channels(String(repeating: "x", count: 40))) { error in
            XCTAssertEqual((error as? NICError)?.code, "not_found")
        }
    }

    func testKernelRefusalCarriesExtendedAck() throws {
        let netlink = try EthtoolNetlink()
        XCTAssertThrowsError(try netlink.setChannels(lab.device, ChannelsChange(rx: 9))) { error in
            guard case NICError.kernel(_, _, let code, let extack)? = error as? NICError else {
                return XCTFail("expected a kernel error, got \(error)")
            }
            XCTAssertEqual(code, EINVAL)
            XCTAssertEqual(extack, "requested channel count exceeds maximum")
        }
    }

    func testDriverInfoAndDiscovery() throws {
        let ethtool = try Ethtool()
        XCTAssertEqual(try ethtool.driverInfo(lab.device).driver, "veth")
        let info = try NICDiscovery.interface(lab.device, ethtool: ethtool)
        XCTAssertEqual(info.driver, "veth")
        XCTAssertEqual(info.rxQueues, 4)
        XCTAssertEqual(info.txQueues, 4)
        XCTAssertEqual(info.mtu, 1500)
        XCTAssertFalse(info.up)
        XCTAssertNil(info.xdp)
        XCTAssertEqual(info.macAddress.count, 17)
        XCTAssertTrue(NICDiscovery.interfaces(ethtool: ethtool).contains { $0.name == lab.device })
    }

    /// "No program" and "the query failed" differ: the daemon's periodic
    /// check binds a pipeline again when its program is gone, so a failed
    /// query must not read as gone.
    func testAnXDPQueryThatFailsIsAnErrorNotNoProgram() throws {
        XCTAssertNil(try NICDiscovery.queryXDPAttachment(index: if_nametoindex(lab.device)))
        XCTAssertThrowsError(try NICDiscovery.queryXDPAttachment(index: 0)) { error in
            XCTAssertEqual((error as? SystemCallError)?.errno, .operationNotSupportedByDevice, "\(error)")
        }
        XCTAssertNil(NICDiscovery.xdpAttachment(index: 0))
    }

    func testPrivateFlagsAreUnsupportedOnVethLikeEthtoolSays() throws {
        XCTAssertFalse(try SluiceTestSupport.run(["ethtool", "--show-priv-flags", lab.device]).succeeded)
        for backend in BackendChoice.allCases {
            XCTAssertThrowsError(try Ethtool(backend: backend).privateFlags(lab.device)) { error in
                XCTAssertEqual(error as? NICError,
                               .unsupported(interface: lab.device, driver: "veth", operation: .privateFlagsGet))
            }
        }
    }
}
