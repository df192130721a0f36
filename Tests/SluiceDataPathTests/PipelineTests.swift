import Foundation
import SluiceDataPath
import SluiceModules
import SluiceTestSupport
import Synchronization
import XCTest

/// The data path against a real veth lab: Sluice's XDP program, AF_XDP
/// sockets in copy mode, trafgen as the traffic source.
final class PipelineTests: XCTestCase {
    private var lab: Lab?

    override func setUpWithError() throws {
        try Privilege.require()
        setenv("LIBXDP_SKIP_DISPATCHER", "1", 1)
    }

    override func tearDownWithError() throws {
        try lab?.down()
    }

    private func makeLab(queues: Int = 2, xpsQueues: [Int]? = nil) throws -> Lab {
        let lab = try Lab.up(queues: queues, xpsQueues: xpsQueues, prefix: "sdp")
        self.lab = lab
        return lab
    }

    private func config(_ lab: Lab, mode: ProcessingMode, bindMode: XSKBindMode = .copy) -> DataPathConfig {
        var config = DataPathConfig(interface: lab.appInterface)
        config.mode = mode
        config.bindMode = bindMode
        config.geometry.frameCount = 4096
        config.geometry.frameSize = 2048
        return config
    }

    func testInlineReceivesEveryPacketOnBothQueues() throws {
        try receivesEveryPacket(mode: .inline)
    }

    func testPipelinedReceivesEveryPacketOnBothQueues() throws {
        try receivesEveryPacket(mode: .pipelined)
    }

    /// Exactly N frames of two flows, half from each CPU (so half on each
    /// queue): the module sees N, per queue and per flow, and the sockets'
    /// received + kernel-counted drops add up to N.
    private func receivesEveryPacket(mode: ProcessingMode) throws {
        let lab = try makeLab()
        let tally = TallyModule()
        let pipeline = try Pipeline(
            config: config(lab, mode: mode), bindings: [.identity(channel: 0), .identity(channel: 1)], makeModules: { _ in [tally] })
        defer { pipeline.stop() }
        XCTAssertTrue(try hasXDPProgram(lab))
        XCTAssertEqual(try openXDPSockets(), 2, "one AF_XDP socket per binding")
        // Operators find the data-path threads by name (ps -L, top -H).
        let expectedThreads = Set([0, 1].flatMap { queue in
            (mode == .pipelined ? ["rx", "wk"] : ["rx"]).map { String("\($0)\(queue)@\(lab.appInterface)".utf8.prefix(15))! }
        })
        try waitUntil("the data-path threads carry their names") {
            expectedThreads.isSubset(of: Self.threadNames())
        }
        let perWorker = 1500
        let flows = UDPFlows(lab: lab, ports: [9000, 9001])
        try flows.send(perWorker: perWorker)
        let sent = 2 * perWorker * flows.ports.count
        let perQueue = perWorker * flows.ports.count, perFlow = 2 * perWorker
        try waitUntil("\(sent) packets accounted for", timeout: .seconds(20)) {
            pipeline.statistics().sockets.reduce(0) { $0 + $1.accounted } >= UInt64(sent)
        }
        // Let the modules see the last batch the sockets received.
        try waitUntil("modules saw every received packet") {
            UInt64(tally.total) == pipeline.statistics().sockets.reduce(0) { $0 + $1.rxPackets }
        }
        let statistics = pipeline.statistics()
        XCTAssertEqual(statistics.sockets.map { $0.modules.first?.counters["packets"] }, [UInt64(sent), UInt64(sent)],
                       "each socket's chain reports (the shared tally's total)")
        let accounted = statistics.sockets.reduce(0) { $0 + $1.accounted + $1.handoffDrops }
        XCTAssertEqual(accounted, UInt64(sent), "\(statistics)")
        XCTAssertEqual(statistics.sockets.map(\.rxPackets), [UInt64(perQueue), UInt64(perQueue)], "one CPU per queue by XPS")
        XCTAssertEqual(tally.total, sent)
        XCTAssertEqual(tally.queues, [0: perQueue, 1: perQueue])
        XCTAssertEqual(tally.ports, [9000: perFlow, 9001: perFlow])
        XCTAssertEqual(statistics.sockets.map(\.passed).reduce(0, +), UInt64(sent))
        XCTAssertEqual(statistics.xdp.map(\.redirected).reduce(0, +), UInt64(sent))
        XCTAssertTrue(statistics.sockets.allSatisfy { !$0.zeroCopy && $0.invalidFrames == 0 && $0.malformed == 0 })
        pipeline.stop()
        XCTAssertFalse(try hasXDPProgram(lab), "stop detaches the program")
        XCTAssertEqual(try openXDPSockets(), 0, "stop closes the sockets")
        XCTAssertEqual(pipeline.statistics().sockets.map(\.rxPackets), [UInt64(perQueue), UInt64(perQueue)], "counters kept after stop")
    }

    /// The kernel's names of this process's threads.
    private static func threadNames() -> Set<String> {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return Set(tasks.compactMap { task in
            (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8))?
                .trimmingCharacters(in: .newlines)
        })
    }

    /// veth has no zero-copy: `auto` falls back to copy and says why;
    /// `zerocopy` fails naming the driver.
    func testZeroCopyOnVeth() throws {
        let lab = try makeLab()
        XCTAssertThrowsError(
            try Pipeline(config: config(lab, mode: .inline, bindMode: .zerocopy), bindings: [.identity(channel: 0)], makeModules: { _ in [] })
        ) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("veth cannot do AF_XDP zero-copy on \(lab.appInterface) queue 0"), text)
        }
        XCTAssertFalse(try hasXDPProgram(lab), "a failed start leaves no program behind")
        XCTAssertEqual(try openXDPSockets(), 0, "nor a socket")
        let pipeline = try Pipeline(
            config: config(lab, mode: .inline, bindMode: .auto), bindings: [.identity(channel: 0)], makeModules: { _ in [] })
        defer { pipeline.stop() }
        let socket = try XCTUnwrap(pipeline.statistics().sockets.first)
        XCTAssertFalse(socket.zeroCopy)
        XCTAssertTrue(socket.fallbackReason?.contains("veth cannot do AF_XDP zero-copy") == true, "\(socket)")
    }

    /// Channel i bound to queue i+2 with XSKMAP key i+2 (old-mlx5 style) on a
    /// 4-queue veth whose generator sends on queues 2–3: everything arrives
    /// through those sockets. Identity bindings for channels 0–1 get nothing
    /// of the same traffic, so no code path ignores the mapping.
    func testNonIdentityMappingEndToEnd() throws {
        let lab = try makeLab(queues: 4, xpsQueues: [2, 3])
        let flows = UDPFlows(lab: lab, ports: [7000])
        let perWorker = 1000
        do {
            let tally = TallyModule()
            let mapped = (0..<2).map { ChannelBinding(channel: $0, bindQueue: UInt32($0 + 2), xskmapKey: UInt32($0 + 2)) }
            var config = config(lab, mode: .inline)
            config.minimumXSKMapEntries = 8  // as a plugin asking for 2·nch would
            let pipeline = try Pipeline(config: config, bindings: mapped, makeModules: { _ in [tally] })
            defer { pipeline.stop() }
            XCTAssertEqual(pipeline.statistics().xdp.count, 8, "maps sized to the plugin's minimum")
            try flows.send(perWorker: perWorker)
            try waitUntil("\(2 * perWorker) packets through queues 2-3") { tally.total >= 2 * perWorker }
            XCTAssertEqual(tally.queues, [2: perWorker, 3: perWorker])
            XCTAssertEqual(pipeline.statistics().sockets.map(\.rxPackets), [UInt64(perWorker), UInt64(perWorker)])
        }
        let tally = TallyModule()
        let pipeline = try Pipeline(
            config: config(lab, mode: .inline), bindings: [.identity(channel: 0), .identity(channel: 1)], makeModules: { _ in [tally] })
        defer { pipeline.stop() }
        XCTAssertEqual(pipeline.statistics().xdp.count, 4, "maps sized to the rx-queue count")
        try flows.send(perWorker: perWorker)
        // The XDP program's counters are the witness that the traffic came by:
        // on queues 2-3, which Sluice does not own here, so it went to the kernel.
        try waitUntil("the XDP program saw the traffic on queues 2-3") {
            pipeline.statistics().xdp.filter { $0.queue >= 2 }.reduce(0) { $0 + $1.passed } >= UInt64(2 * perWorker)
        }
        XCTAssertEqual(tally.total, 0)
        XCTAssertEqual(pipeline.statistics().sockets.map(\.rxPackets), [0, 0])
    }

    /// A program someone else attached is never replaced.
    func testForeignProgramIsNotReplaced() throws {
        let lab = try makeLab()
        let object = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("xdp") + ".o")
        try XDPObjectFile.write(to: object)
        defer { try? FileManager.default.removeItem(at: object) }
        try lab.inApp(["ip", "link", "set", "dev", lab.appInterface, "xdpgeneric", "obj", object.path, "sec", "xdp"], check: true)
        XCTAssertTrue(try hasXDPProgram(lab))
        XCTAssertThrowsError(
            try Pipeline(config: config(lab, mode: .inline), bindings: [.identity(channel: 0)], makeModules: { _ in [] })
        ) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("\(lab.appInterface) already has an XDP program (id "), text)
            XCTAssertTrue(text.contains("ip link set dev \(lab.appInterface) xdp off"), text)
            XCTAssertTrue(text.contains("EBUSY") || text.contains("EEXIST"), text)
        }
        XCTAssertTrue(try hasXDPProgram(lab), "the foreign program is still there")
        try lab.inApp(["ip", "link", "set", "dev", lab.appInterface, "xdpgeneric", "off"], check: true)
    }

    /// A second pipeline on the same interface is refused, and the error says
    /// the program there is Sluice's own.
    func testSecondPipelineOnAnInterfaceIsRefused() throws {
        let lab = try makeLab()
        let first = try Pipeline(config: config(lab, mode: .inline), bindings: [.identity(channel: 0)], makeModules: { _ in [] })
        defer { first.stop() }
        XCTAssertEqual(XDPProgram.attachedProgramID(interfaceIndex: try InterfaceFacts.index(lab.appInterface)), first.programID)
        XCTAssertThrowsError(
            try Pipeline(config: config(lab, mode: .inline), bindings: [.identity(channel: 1)], makeModules: { _ in [] })
        ) { error in
            XCTAssertTrue("\(error)".contains("\(lab.appInterface) already has Sluice's XDP program (id \(first.programID))"), "\(error)")
        }
        XCTAssertTrue(try hasXDPProgram(lab), "the first pipeline's program is untouched")
    }

    /// A process that attached and is killed with SIGKILL leaves no program:
    /// the BPF link dies with its last descriptor.
    func testKillNineLeavesNoProgram() throws {
        if let interface = ProcessInfo.processInfo.environment["SLUICE_DP_HOLD_INTERFACE"] {
            // Child mode: attach and wait to be killed.
            let pipeline = try Pipeline(
                config: DataPathConfig(interface: interface), bindings: [.identity(channel: 0)], makeModules: { _ in [] })
            print("attached \(pipeline.programID)")
            while true { sleep(60) }
        }
        let lab = try makeLab()
        let child = Process()
        child.executableURL = productsDirectory.appendingPathComponent("SluicePackageTests.xctest")
        child.arguments = ["SluiceDataPathTests.PipelineTests/testKillNineLeavesNoProgram"]
        var environment = ProcessInfo.processInfo.environment
        environment["SLUICE_DP_HOLD_INTERFACE"] = lab.appInterface
        child.environment = environment
        child.standardOutput = FileHandle.nullDevice
        try child.run()
        defer { if child.isRunning { kill(child.processIdentifier, SIGKILL) } }
        try waitUntil("the child attached its program", timeout: .seconds(30)) { try hasXDPProgram(lab) }
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
        XCTAssertEqual(child.terminationReason, .uncaughtSignal)
        try waitUntil("the kernel detached the dead process's program") { try !hasXDPProgram(lab) }
    }

    /// With a UDP-port prefilter only that flow reaches Sluice; another UDP
    /// port and ICMP go to the kernel, so ping keeps working.
    func testPrefilterPassesEverythingElseToTheKernel() throws {
        let lab = try makeLab()
        var config = config(lab, mode: .inline)
        config.prefilter = Prefilter(protocols: [.udp], destinationPorts: [9000...9000])
        let tally = TallyModule()
        let pipeline = try Pipeline(
            config: config, bindings: [.identity(channel: 0), .identity(channel: 1)], makeModules: { _ in [tally] })
        defer { pipeline.stop() }
        let perWorker = 500
        try UDPFlows(lab: lab, ports: [9000, 9001]).send(perWorker: perWorker)
        let ping = try lab.inGenerator(["ping", "-c", "3", "-i", "0.2", "-W", "2", lab.appAddress])
        XCTAssertTrue(ping.succeeded, "ping across the veth with Sluice attached: \(ping)")
        try waitUntil("the matching flow arrived") { tally.total >= 2 * perWorker }
        XCTAssertEqual(tally.ports, [9000: 2 * perWorker], "only the prefiltered port")
        let xdp = pipeline.statistics().xdp
        XCTAssertEqual(xdp.reduce(0) { $0 + $1.redirected }, UInt64(2 * perWorker))
        XCTAssertGreaterThanOrEqual(xdp.reduce(0) { $0 + $1.passed }, UInt64(2 * perWorker + 3), "port 9001 and the pings")
    }

    /// A worker that cannot keep up: the RX → worker ring fills and what
    /// does not fit is counted as hand-off drops; nothing goes uncounted.
    func testFullHandoffRingIsCountedAsDrops() throws {
        let lab = try makeLab()
        var config = config(lab, mode: .pipelined)
        config.handoffRingSize = 2
        let tally = TallyModule(workPerBatch: .milliseconds(2))
        let pipeline = try Pipeline(config: config, bindings: [.identity(channel: 0), .identity(channel: 1)],
                                    makeModules: { _ in [tally] })
        defer { pipeline.stop() }
        let perWorker = 2000
        try UDPFlows(lab: lab, ports: [9000]).send(perWorker: perWorker)
        let sent = UInt64(2 * perWorker)
        try waitUntil("every packet received or counted", timeout: .seconds(30)) {
            let sockets = pipeline.statistics().sockets
            return sockets.reduce(0) { $0 + $1.accounted } >= sent
                && sockets.reduce(0) { $0 + $1.rxPackets - $1.handoffDrops } == UInt64(tally.total)
        }
        let sockets = pipeline.statistics().sockets
        let handoffDrops = sockets.reduce(0) { $0 + $1.handoffDrops }
        XCTAssertGreaterThan(handoffDrops, 0, "the ring of 2 overflowed")
        XCTAssertEqual(UInt64(tally.total) + handoffDrops + sockets.reduce(0) { $0 + $1.kernel.rxDropped + $1.kernel.rxRingFull },
                       sent, "\(sockets)")
    }

    /// `.transmit` sends the frame back out of the socket it came from: the
    /// generator end receives exactly what was reflected.
    func testTransmitVerdictSendsFramesBack() throws {
        let lab = try makeLab()
        let reflector = TallyModule(verdict: .transmit, swapMACs: true)
        let pipeline = try Pipeline(
            config: config(lab, mode: .pipelined), bindings: [.identity(channel: 0), .identity(channel: 1)],
            makeModules: { _ in [reflector] })
        defer { pipeline.stop() }
        let before = try generatorReceived(lab)
        let perWorker = 500
        try UDPFlows(lab: lab, ports: [9000]).send(perWorker: perWorker)
        try waitUntil("the generator got the reflected frames") { try generatorReceived(lab) - before >= 2 * perWorker }
        XCTAssertEqual(try generatorReceived(lab) - before, 2 * perWorker)
        let sockets = pipeline.statistics().sockets
        XCTAssertEqual(sockets.reduce(0) { $0 + $1.transmitted }, UInt64(2 * perWorker))
        XCTAssertEqual(sockets.reduce(0) { $0 + $1.transmitFailed }, 0)
    }

    /// AF_XDP sockets this process holds open: the kernel's SO_DOMAIN of
    /// every descriptor in /proc/self/fd (`ss --xdp` needs xsk_diag).
    private func openXDPSockets() throws -> Int {
        let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").compactMap { Int32($0) }
        return descriptors.filter { descriptor in
            var domain: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            return getsockopt(descriptor, SOL_SOCKET, SO_DOMAIN, &domain, &length) == 0 && domain == 44 /* AF_XDP */
        }.count
    }

    private func generatorReceived(_ lab: Lab) throws -> Int {
        let text = try lab.inGenerator(["cat", "/sys/class/net/\(lab.generatorInterface)/statistics/rx_packets"], check: true).stdout
        return try XCTUnwrap(Int(text.trimmingCharacters(in: .whitespacesAndNewlines)))
    }
}

extension PipelineTests {
    /// A pipeline stopped and started again at once binds the same queues
    /// and attaches again, every time — also while another thread of the
    /// process forks children and takes the RTNL lock (as the daemon's
    /// rebind after a channel change does on a busy host). The kernel frees
    /// a closed AF_XDP socket's queue later, and a forked child holds copies
    /// of the descriptors until it execs; neither may make a start fail.
    func testStoppingAndStartingAgainAtOnceAlwaysBinds() throws {
        let lab = try makeLab()
        final class Flag: Sendable { let raised = Mutex(false) }
        let noiseStops = Flag()
        let setMTU = lab.appCommand(["ip", "link", "set", "dev", lab.appInterface, "mtu", "1500"])
        let noise = Thread {
            while !noiseStops.raised.withLock({ $0 }) {
                _ = try? SluiceTestSupport.run(setMTU, check: false)
            }
        }
        noise.start()
        defer { noiseStops.raised.withLock { $0 = true } }
        for round in 0..<40 {
            let pipeline: Pipeline
            do {
                pipeline = try Pipeline(config: config(lab, mode: .inline), bindings: [.identity(channel: 0), .identity(channel: 1)],
                                        makeModules: { _ in [] })
            } catch {
                return XCTFail("round \(round): \(error)")
            }
            XCTAssertEqual(pipeline.statistics().sockets.map(\.queue), [0, 1])
            pipeline.stop()
            XCTAssertFalse(try hasXDPProgram(lab), "round \(round): the stop detached the program at once")
        }
    }
}
