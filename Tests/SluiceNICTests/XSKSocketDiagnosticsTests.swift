import CSluiceShims
import CXDP
import Foundation
@testable import SluiceNIC
import SluiceTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// AF_XDP sock_diag against real sockets: copy-mode sockets opened with
/// libxdp on veths in a network namespace of the test's own, so that the
/// namespace holds no socket but these and the listing can be exact.
final class XSKSocketDiagnosticsTests: XCTestCase {
    var namespace: String!

    override func setUpWithError() throws {
        try Privilege.require()
        namespace = uniqueName("sxskns")
        try runCommand(["ip", "netns", "add", namespace], check: true)
        do {
            for (device, peer) in [("xa0", "xa1"), ("xb0", "xb1")] {
                try runCommand(["ip", "-n", namespace, "link", "add", device, "numrxqueues", "2", "numtxqueues", "2",
                         "type", "veth", "peer", "name", peer, "numrxqueues", "2", "numtxqueues", "2"], check: true)
            }
        } catch {
            tearDown()
            throw error
        }
    }

    override func tearDown() {
        // The namespace's veths go with it.
        if let namespace { _ = try? runCommand(["ip", "netns", "del", namespace]) }
        namespace = nil
    }

    func testBoundSocketsListsEverySocketWithItsInterfaceQueueAndInode() throws {
        let (a, b) = try inNetworkNamespace(namespace) { (if_nametoindex("xa0"), if_nametoindex("xb0")) }
        XCTAssertNotEqual(a, 0)
        XCTAssertNotEqual(b, 0)
        XCTAssertNotEqual(a, b)
        try inNetworkNamespace(namespace) { try Self.requireSocketDiagnostics() }
        XCTAssertEqual(try inNetworkNamespace(namespace) { try XSKSocketDiagnostics.boundSockets() }, [],
                       "a fresh namespace has no AF_XDP socket")

        let sockets = try inNetworkNamespace(namespace) {
            [try CopyModeSocket("xa0", queue: 0), try CopyModeSocket("xa0", queue: 1), try CopyModeSocket("xb0", queue: 1)]
        }
        defer { sockets.forEach { $0.close() } }
        let expected = sockets.map {
            XSKSocketInfo(inode: $0.inode, ifindex: $0.interface == "xa0" ? a : b, queue: $0.queue,
                          zeroCopy: false, uid: getuid())
        }
        // Queue 1 on both interfaces: a parser reading the wrong word of
        // xdp_diag_info, or the wrong attribute, cannot match all three.
        XCTAssertEqual(Set(expected.map(\.inode)).count, 3)
        let listed = try inNetworkNamespace(namespace) { try XSKSocketDiagnostics.boundSockets() }
        XCTAssertEqual(listed.sorted(by: Self.order), expected.sorted(by: Self.order))
        XCTAssertEqual(try inNetworkNamespace(namespace) { try XSKSocketDiagnostics.zeroCopySockets(interfaceIndex: a) }, 0,
                       "veth has no zero-copy: every socket is in copy mode")

        // The root namespace lists its own sockets, never these.
        let outside = try XSKSocketDiagnostics.boundSockets()
        XCTAssertTrue(Set(outside.map(\.inode)).isDisjoint(with: expected.map(\.inode)), "\(outside)")

        sockets[1].close()
        try waitUntil("the closed socket on xa0 queue 1 leaves the kernel's list", timeout: .seconds(10)) {
            try inNetworkNamespace(namespace) { try XSKSocketDiagnostics.boundSockets() }.sorted(by: Self.order)
                == [expected[0], expected[2]].sorted(by: Self.order)
        }
    }

    func testASocketNotYetBoundIsNotListedAndHidesNothing() throws {
        try inNetworkNamespace(namespace) { try Self.requireSocketDiagnostics() }
        let sockets = try inNetworkNamespace(namespace) { [try CopyModeSocket("xa0", queue: 1), try CopyModeSocket("xb0", queue: 0)] }
        defer { sockets.forEach { $0.close() } }
        let bound = Set(sockets.map(\.inode))
        // Created after the bound ones, so first in the kernel's list; the
        // kernel reports it with ifindex 0 until it is bound.
        let unbound = try inNetworkNamespace(namespace) { socket(AF_XDP, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        XCTAssertGreaterThanOrEqual(unbound, 0, String(cString: strerror(errno)))
        defer { close(unbound) }
        let listed = try inNetworkNamespace(namespace) { try XSKSocketDiagnostics.boundSockets() }
        XCTAssertEqual(Set(listed.map(\.inode)), bound)
    }

    func testASocketWhoseInterfaceWentAwayHidingOlderOnesIsAnError() throws {
        try inNetworkNamespace(namespace) { try Self.requireSocketDiagnostics() }
        try runCommand(["ip", "-n", namespace, "link", "add", "xc0", "type", "veth", "peer", "name", "xc1"], check: true)
        let sockets = try inNetworkNamespace(namespace) {
            [try CopyModeSocket("xa0", queue: 1), try CopyModeSocket("xb0", queue: 0), try CopyModeSocket("xc0", queue: 0)]
        }
        defer { sockets.forEach { $0.close() } }
        try runCommand(["ip", "-n", namespace, "link", "del", "xc0"], check: true)
        // The newest socket lost its interface: the kernel's dump stops at
        // it, so the two bound ones are missing; a silent empty list would
        // tell old mlx5's plugin "no zero-copy sockets".
        XCTAssertEqual(try inNetworkNamespace(namespace) { XSKSocketDiagnostics.socketsInUse() }, 3)
        XCTAssertThrowsError(try inNetworkNamespace(namespace) { try XSKSocketDiagnostics.boundSockets() }) {
            XCTAssertEqual($0 as? NICError, .xskListIncomplete(inUse: 3, listed: 0))
            XCTAssertEqual(($0 as? NICError)?.code, "busy")
        }
        sockets[2].close()
        try waitUntil("both bound sockets are listed once the orphaned one is closed") {
            Set(try inNetworkNamespace(namespace) { try XSKSocketDiagnostics.boundSockets() }.map(\.inode))
                == [sockets[0].inode, sockets[1].inode]
        }
    }

    func testAnOrphanedSocketThatIsTheOldestHidesNothing() throws {
        try inNetworkNamespace(namespace) { try Self.requireSocketDiagnostics() }
        try runCommand(["ip", "-n", namespace, "link", "add", "xc0", "type", "veth", "peer", "name", "xc1"], check: true)
        let orphan = try inNetworkNamespace(namespace) { try CopyModeSocket("xc0", queue: 0) }
        defer { orphan.close() }
        try runCommand(["ip", "-n", namespace, "link", "del", "xc0"], check: true)
        let sockets = try inNetworkNamespace(namespace) { [try CopyModeSocket("xa0", queue: 1), try CopyModeSocket("xb0", queue: 0)] }
        defer { sockets.forEach { $0.close() } }
        let listed = try inNetworkNamespace(namespace) { try XSKSocketDiagnostics.boundSockets() }
        XCTAssertEqual(Set(listed.map(\.inode)), Set(sockets.map(\.inode)))
    }

    func testAKernelWithoutAFXDPSockDiagGivesTheDistinctError() throws {
        switch Self.kernelConfig("CONFIG_XDP_SOCKETS_DIAG") {
        case "y"?, "m"?:
            throw XCTSkip("this kernel has AF_XDP sock_diag (CONFIG_XDP_SOCKETS_DIAG); see the listing test")
        case nil where !FileManager.default.fileExists(atPath: "/proc/config.gz"):
            throw XCTSkip("no /proc/config.gz to tell whether the kernel has AF_XDP sock_diag")
        default:
            break
        }
        for attempt in 1...2 {
            XCTAssertThrowsError(try XSKSocketDiagnostics.zeroCopySockets(interfaceIndex: 1), "attempt \(attempt)") { error in
                guard case NICError.xskDiagnosticsUnavailable(let detail)? = error as? NICError else {
                    return XCTFail("expected xskDiagnosticsUnavailable, got \(error)")
                }
                let nicError = error as! NICError
                XCTAssertEqual(nicError.code, "unsupported")
                XCTAssertTrue(nicError.description.hasPrefix(
                    "the kernel has no AF_XDP socket diagnostics (CONFIG_XDP_SOCKETS_DIAG); "
                    + "zero-copy sockets of other processes cannot be counted ("), nicError.description)
                // sock_diag answers ENOENT when no AF_XDP handler is registered.
                XCTAssertTrue(detail.contains("SOCK_DIAG_BY_FAMILY for AF_XDP: No such file or directory (errno 2)"), detail)
            }
        }
    }

    func testZeroCopyCountTakesOnlyZeroCopySocketsOfThatInterface() throws {
        let sockets = [
            XSKSocketInfo(inode: 1, ifindex: 7, queue: 4, zeroCopy: true),
            XSKSocketInfo(inode: 2, ifindex: 7, queue: 5, zeroCopy: true),
            XSKSocketInfo(inode: 3, ifindex: 7, queue: 0, zeroCopy: false),
            XSKSocketInfo(inode: 4, ifindex: 8, queue: 4, zeroCopy: true),
        ]
        XCTAssertEqual(try XSKSocketDiagnostics.zeroCopyCount(sockets, interfaceIndex: 7), 2)
        XCTAssertEqual(try XSKSocketDiagnostics.zeroCopyCount(sockets, interfaceIndex: 8), 1)
        XCTAssertEqual(try XSKSocketDiagnostics.zeroCopyCount(sockets, interfaceIndex: 9), 0)
    }

    func testInfoJSONShape() throws {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys]
        let json = String(decoding: try encoder.encode(XSKSocketInfo(inode: 9, ifindex: 3, queue: 1, zeroCopy: true, uid: 0)),
                          as: UTF8.self)
        XCTAssertEqual(json, #"{"ifindex":3,"inode":9,"queue":1,"uid":0,"zero_copy":true}"#)
    }

    // MARK: Helpers

    static func order(_ x: XSKSocketInfo, _ y: XSKSocketInfo) -> Bool { x.inode < y.inode }

    /// Skips (naming the kernel's answer) when the kernel has no AF_XDP
    /// sock_diag, unless its config says it has one: then that is a failure.
    static func requireSocketDiagnostics() throws {
        do {
            _ = try XSKSocketDiagnostics.boundSockets()
        } catch NICError.xskDiagnosticsUnavailable(let detail) {
            if let built = kernelConfig("CONFIG_XDP_SOCKETS_DIAG"), built == "y" {
                XCTFail("CONFIG_XDP_SOCKETS_DIAG=y but: \(detail)")
            }
            throw XCTSkip("this kernel has no AF_XDP sock_diag (CONFIG_XDP_SOCKETS_DIAG): \(detail)")
        }
    }

    /// `y`, `m`, `n` (not set), or nil when the kernel does not publish its config.
    static func kernelConfig(_ option: String) -> String? {
        guard FileManager.default.fileExists(atPath: "/proc/config.gz"),
              let text = try? runCommand(["zcat", "/proc/config.gz"], check: true).stdout else { return nil }
        for line in text.split(separator: "\n") {
            if line == "# \(option) is not set" { return "n" }
            if line.hasPrefix("\(option)=") { return String(line.dropFirst(option.count + 1)) }
        }
        return "n"
    }
}

/// Runs `body` on a thread of its own that has joined network namespace
/// `name` (setns moves only the calling thread), and waits for it.
func inNetworkNamespace<T>(_ name: String, _ body: @escaping @Sendable () throws -> T) throws -> T {
    let outcome = ResultBox<T>()
    let finished = DispatchSemaphore(value: 0)
    let thread = Thread {
        defer { finished.signal() }
        outcome.value = Result {
            let fd = open("/run/netns/\(name)", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            defer { close(fd) }
            guard sluice_setns_net(fd) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            return try body()
        }
    }
    thread.start()
    guard finished.wait(timeout: .now() + 60) == .success, let result = outcome.value else {
        throw POSIXError(.ETIMEDOUT)
    }
    return try result.get()
}

// Unchecked: written by the thread before it signals `finished`, read after the wait.
final class ResultBox<T>: @unchecked Sendable {
    var value: Result<T, Error>?
}

/// One AF_XDP socket in copy mode, bound with libxdp (no XDP program: the
/// socket is listed once bound, whether or not anything redirects to it).
// Unchecked: made on a namespace thread and handed back whole; the rings are never used after.
final class CopyModeSocket: @unchecked Sendable {
    let interface: String
    let queue: UInt32
    private(set) var inode: UInt32 = 0
    private let fill = UnsafeMutablePointer<xsk_ring_prod>.allocate(capacity: 1)
    private let completion = UnsafeMutablePointer<xsk_ring_cons>.allocate(capacity: 1)
    private let rx = UnsafeMutablePointer<xsk_ring_cons>.allocate(capacity: 1)
    private let areaSize = 64 * 4096
    private var area: UnsafeMutableRawPointer?
    private var umem: OpaquePointer?
    private var socket: OpaquePointer?

    init(_ interface: String, queue: UInt32) throws {
        self.interface = interface
        self.queue = queue
        fill.initialize(to: xsk_ring_prod())
        completion.initialize(to: xsk_ring_cons())
        rx.initialize(to: xsk_ring_cons())
        let mapped = mmap(nil, areaSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let mapped, mapped != MAP_FAILED else { throw failure("mmap", errno) }
        area = mapped
        var umemConfig = xsk_umem_config(fill_size: 64, comp_size: 64, frame_size: 4096, frame_headroom: 0, flags: 0)
        let made = xsk_umem__create(&umem, area, UInt64(areaSize), fill, completion, &umemConfig)
        guard made == 0 else { close(); throw failure("xsk_umem__create", -made) }
        var config = xsk_socket_config()
        config.rx_size = 64
        config.tx_size = 0
        config.libxdp_flags = UInt32(XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD)
        config.bind_flags = UInt16(XDP_COPY)
        let bound = xsk_socket__create(&socket, interface, queue, umem, rx, nil, &config)
        guard bound == 0, let socket else { close(); throw failure("xsk_socket__create(\(interface) queue \(queue))", -bound) }
        var status = stat()
        guard fstat(xsk_socket__fd(socket), &status) == 0 else { close(); throw failure("fstat", errno) }
        inode = UInt32(truncatingIfNeeded: status.st_ino)
    }

    private func failure(_ what: String, _ code: Int32) -> Error {
        NSError(domain: NSPOSIXErrorDomain, code: Int(code), userInfo: [NSLocalizedDescriptionKey: "\(what): \(String(cString: strerror(code)))"])
    }

    func close() {
        if let socket { xsk_socket__delete(socket) }
        socket = nil
        if let umem { _ = xsk_umem__delete(umem) }
        umem = nil
        if let area { munmap(area, areaSize) }
        area = nil
    }

    deinit {
        close()
        fill.deallocate(); completion.deallocate(); rx.deallocate()
    }
}
