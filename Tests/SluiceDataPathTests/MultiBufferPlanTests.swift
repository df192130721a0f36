import XCTest

@testable import SluiceDataPath

/// Which pipelines take multi-buffer, and the refusal of an MTU one frame
/// cannot hold without it (the numbers, and the way out).
final class MultiBufferPlanTests: XCTestCase {
    let found = KernelFeature(.xdpMultiBuffer, .found, "loads")
    let missing = KernelFeature(.xdpMultiBuffer, .missing, "refused")

    func config(_ mode: MultiBufferMode) -> DataPathConfig {
        var config = DataPathConfig(interface: "veth0")
        config.multiBuffer = mode
        return config
    }

    func testMultiBufferOnlyWhereXDPAndAFXDPBothHaveIt() throws {
        let sockets = KernelFeature(.xskMultiBuffer, .found, "ENODEV")
        let noSockets = KernelFeature(.xskMultiBuffer, .missing, "EINVAL")
        XCTAssertTrue(try Pipeline.multiBufferWanted(config(.auto), kernel: found, sockets: sockets))
        XCTAssertTrue(try Pipeline.multiBufferWanted(config(.auto), kernel: found, sockets: KernelFeature(.xskMultiBuffer, .unknown, "EPERM")))
        XCTAssertFalse(try Pipeline.multiBufferWanted(config(.auto), kernel: found, sockets: noSockets), "5.18 to 6.5")
        XCTAssertFalse(try Pipeline.multiBufferWanted(config(.auto), kernel: missing, sockets: sockets))
        XCTAssertFalse(try Pipeline.multiBufferWanted(config(.off), kernel: found, sockets: sockets))
        XCTAssertTrue(try Pipeline.multiBufferWanted(config(.on), kernel: found, sockets: sockets))
        for (kernel, sockets, named) in [(missing, sockets, "BPF_F_XDP_HAS_FRAGS"), (found, noSockets, "XDP_USE_SG")] {
            XCTAssertThrowsError(try Pipeline.multiBufferWanted(config(.on), kernel: kernel, sockets: sockets)) { error in
                let message = "\(error)"
                XCTAssertTrue(message.contains(named) && message.contains("Linux 6.6"), message)
            }
        }
    }

    func testTheLargestMTUOneFrameHolds() {
        // Copy and zero-copy: the frame less XDP_PACKET_HEADROOM, less the Ethernet header.
        XCTAssertEqual(FrameLimit(frameSize: 2048, nativeXDP: false).largestMTU, 1778)
        XCTAssertEqual(FrameLimit(frameSize: 4096, nativeXDP: false).largestMTU, 3826)
        // Native XDP without frags: one page less headroom and skb_shared_info
        // (veth refuses the attach above 3506, measured on 6.18).
        if sysconf(Int32(_SC_PAGESIZE)) == 4096 {
            XCTAssertEqual(FrameLimit(frameSize: 4096, nativeXDP: true).largestMTU, 3506)
            XCTAssertEqual(FrameLimit(frameSize: 2048, nativeXDP: true).largestMTU, 1778)
        }
    }

    func testAnMTUAboveAFrameIsRefusedWithTheNumbersAndTheFixes() throws {
        XCTAssertNoThrow(try FrameLimit(frameSize: 2048, nativeXDP: false).require(mtu: 1778, interface: "veth0", why: "off"))
        XCTAssertThrowsError(try FrameLimit(frameSize: 4096, nativeXDP: true).require(mtu: 9000, interface: "veth0", why: "multi-buffer is off")) { error in
            let message = "\(error)"
            for part in ["MTU 9000 of veth0", "9014 bytes", "multi-buffer is off", "4096-byte UMEM frame holds 3840",
                         "lower the MTU to 3506", "ip link set dev veth0 mtu 3506", "Linux 6.6"] {
                XCTAssertTrue(message.contains(part), "\(part) in: \(message)")
            }
            XCTAssertFalse(message.contains("frame_size = 4096"), "already the largest frame: \(message)")
        }
    }
}
