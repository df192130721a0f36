import XCTest

@testable import SluiceDataPath

/// Which XDP program a pipeline asks for, and the reason status and doctor
/// give, on made-up probe results: the kernels the lab cannot boot (Debian
/// 12's 6.1 has no metadata kfuncs) decide by the same function.
final class RxMetadataChoiceTests: XCTestCase {
    private let found = KernelFeature(.xdpRxMetadata, .found, "vmlinux BTF has FUNC a and b")
    private let missing = KernelFeature(.xdpRxMetadata, .missing, "vmlinux BTF has no FUNC a or b")

    private func choose(
        requested: Bool = true, readers: Bool = true, mode: XDPAttachMode = .native, feature: KernelFeature? = nil
    ) -> (inUse: Bool, reason: String) {
        XDPProgram.rxMetadataChoice(requested: requested, readers: readers, interface: "eth9", mode: mode, feature: feature ?? found)
    }

    func testTheMetadataProgramOnlyWhereEverythingAllowsIt() {
        let chosen = choose()
        XCTAssertTrue(chosen.inUse)
        XCTAssertTrue(chosen.reason.contains("vmlinux BTF has FUNC a and b"), chosen.reason)
    }

    func testEachReasonAgainstNamesItsCause() {
        let kernel = choose(feature: missing)
        XCTAssertFalse(kernel.inUse)
        XCTAssertTrue(kernel.reason.hasPrefix("this kernel has no XDP RX metadata kfuncs"), kernel.reason)
        XCTAssertTrue(kernel.reason.contains("since Linux 6.3") && kernel.reason.contains("has no FUNC"), kernel.reason)
        let unknown = choose(feature: KernelFeature(.xdpRxMetadata, .unknown, "cannot read the kernel's BTF"))
        XCTAssertFalse(unknown.inUse, "unknown is not found: the plain program")
        XCTAssertTrue(unknown.reason.contains("cannot read the kernel's BTF"), unknown.reason)
        let skb = choose(mode: .skb)
        XCTAssertFalse(skb.inUse)
        XCTAssertTrue(skb.reason.contains("skb (generic) mode on eth9"), skb.reason)
        let off = choose(requested: false, feature: missing)
        XCTAssertEqual(off.reason, "rx_metadata = \"off\" for eth9", "the config comes first")
        let unread = choose(readers: false)
        XCTAssertFalse(unread.inUse)
        XCTAssertTrue(unread.reason.hasPrefix("no module of the chain on eth9 reads RX metadata"), unread.reason)
    }

    /// The availability judged from the program's counters.
    func testAvailabilityFromTheCounters() throws {
        func status(written: UInt64, unsupported: UInt64 = 0, absent: UInt64 = 0) -> RxMetadataStatus.Availability {
            var counters = XDPQueueCounters(queue: 0, redirected: written, passed: 0, redirectFailed: 0)
            counters.metadataWritten = written
            counters.hashUnsupported = unsupported
            counters.hashAbsent = absent
            return XDPProgram.availability(of: \.hashUnsupported, \.hashAbsent, in: [counters])
        }
        XCTAssertEqual(status(written: 0), .unseen)
        XCTAssertEqual(status(written: 10), .provided)
        XCTAssertEqual(status(written: 10, absent: 4), .provided, "some frames carried it")
        XCTAssertEqual(status(written: 10, absent: 10), .absent)
        XCTAssertEqual(status(written: 10, unsupported: 10), .unsupported)
    }
}
