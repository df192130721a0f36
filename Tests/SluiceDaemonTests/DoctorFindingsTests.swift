import Foundation
import SluiceProtocol
import XCTest

@testable import SluiceDaemon

/// The diagnosis over made-up numbers, and the tracefs line parser over
/// lines as this kernel prints them.
final class DoctorFindingsTests: XCTestCase {
    private func socket(channel: Int, queue: UInt32, rx: UInt64) -> DoctorInput.Socket {
        DoctorInput.Socket(channel: channel, queue: queue, zeroCopy: true, fallbackReason: nil, rxPackets: rx)
    }

    private func counters(_ queue: UInt32, redirected: UInt64 = 0, passed: UInt64 = 0) -> DoctorInput.QueueProgramCounters {
        DoctorInput.QueueProgramCounters(queue: queue, redirected: redirected, passed: passed, redirectFailed: 0)
    }

    /// Two queues, Sluice's program (id 41) attached, sockets per `channels`.
    private func input(channels: [UInt32], program: [DoctorInput.QueueProgramCounters], received: [UInt64]) -> DoctorInput {
        var input = DoctorInput(interface: "eth9", ifindex: 7, rxQueues: 2)
        input.driver = "veth"
        input.attachedProgramID = 41
        input.attachedMode = "native"
        input.rulesProblem = "veth does not support ntuple rules"
        input.pipeline = DoctorInput.Pipeline(
            running: true, plugin: "generic", attachMode: "native", programID: 41,
            mappings: channels.map { DoctorInput.Mapping(channel: $0, bindQueue: $0, steerQueue: $0) },
            sockets: zip(channels, received).map { socket(channel: Int($0), queue: $0, rx: $1) },
            program: program)
        return input
    }

    func testSeedTrafficOnAnUnboundQueueIsAnErrorNamingBothQueuesAndTheFix() throws {
        let findings = Doctor.diagnose(input(
            channels: [1], program: [counters(0, passed: 1000), counters(1)], received: [0]))
        let first = try XCTUnwrap(findings.first)
        XCTAssertEqual(first.severity, .error, "\(findings)")
        XCTAssertEqual(first.queue, 0)
        XCTAssertEqual(first.title, "queue 0 receives 1000 packets but no socket is bound to it")
        XCTAssertTrue(first.evidence.contains("socket for channel 1 (queue 1) got 0"), "\(first.evidence)")
        XCTAssertTrue(first.evidence.contains { $0.contains("queue 0: passed 1000") }, "\(first.evidence)")
        let fix = try XCTUnwrap(first.fix)
        XCTAssertTrue(fix.contains("channels = [1, 0]"), fix)
        XCTAssertTrue(fix.contains("sluicectl steer add eth9 flow-type udp4 dst-port PORT channel 1"), fix)
        XCTAssertTrue(fix.contains("veth has none"), fix)
        XCTAssertFalse(findings.contains { $0.severity == .ok }, "no all-clear beside an error")
    }

    /// RX metadata is information, never a warning: in use, a driver that
    /// answers EOPNOTSUPP, and each reason it is off with its fix.
    func testRxMetadataFindingSaysWhyAndHowToTurnItOn() throws {
        func finding(_ status: RxMetadataStatus, mode: String = "auto", attach: String = "native") throws -> DoctorFinding {
            var input = input(channels: [0], program: [counters(0, redirected: 10)], received: [10])
            input.pipeline?.rxMetadata = status
            input.pipeline?.rxMetadataMode = mode
            input.pipeline?.attachMode = attach
            let findings = Doctor.diagnose(input)
            XCTAssertEqual(findings.last?.severity, .ok, "information only: the all-clear stays: \(findings)")
            return try XCTUnwrap(findings.first { $0.title.contains("RX metadata") || $0.title.contains("provide the RX") }, "\(findings)")
        }
        let inUse = try finding(RxMetadataStatus(inUse: true, reason: "device-bound", timestamp: .absent, hash: .provided))
        XCTAssertEqual(inUse.title, "driver RX metadata is in use on eth9")
        XCTAssertEqual(inUse.severity, .info)
        XCTAssertTrue(inUse.evidence.contains("hash: provided"), "\(inUse.evidence)")
        XCTAssertNil(inUse.fix)
        let unsupported = try finding(RxMetadataStatus(inUse: true, reason: "device-bound", timestamp: .unsupported, hash: .unsupported))
        XCTAssertEqual(unsupported.title, "veth on eth9 does not provide the RX timestamp or hash (the kfunc answers EOPNOTSUPP)")
        let off = try finding(RxMetadataStatus(inUse: false, reason: "rx_metadata = \"off\" for eth9"), mode: "off")
        XCTAssertEqual(off.title, "driver RX metadata is not in use on eth9")
        XCTAssertTrue(off.fix?.hasPrefix("set rx_metadata = \"auto\" in [[interface]] eth9") == true, "\(off)")
        let skb = try finding(RxMetadataStatus(inUse: false, reason: "XDP runs in skb (generic) mode"), attach: "skb")
        XCTAssertTrue(skb.fix?.hasPrefix("set attach_mode = \"native\"") == true, "\(skb)")
        let kernel = try finding(RxMetadataStatus(inUse: false, reason: "this kernel has no XDP RX metadata kfuncs"))
        XCTAssertTrue(kernel.fix?.contains("Linux 6.3 or later") == true, "\(kernel)")
        XCTAssertTrue(kernel.evidence.contains("reason: this kernel has no XDP RX metadata kfuncs"), "\(kernel.evidence)")
    }

    func testTrafficOnAnUnboundQueueBesideABusyBoundOneIsAWarning() {
        let findings = Doctor.diagnose(input(
            channels: [1], program: [counters(0, passed: 5), counters(1, redirected: 900)], received: [900]))
        let unbound = findings.first { $0.queue == 0 }
        XCTAssertEqual(unbound?.severity, .warning, "\(findings)")
    }

    func testHealthySetupHasNoWarningsAndSaysSo() {
        let findings = Doctor.diagnose(input(
            channels: [0, 1], program: [counters(0, redirected: 500), counters(1, redirected: 700)], received: [500, 700]))
        XCTAssertFalse(findings.contains { $0.severity >= .warning }, "\(findings)")
        XCTAssertEqual(findings.last?.severity, .ok, "the all-clear comes last: \(findings)")
        XCTAssertTrue(findings.contains { $0.title.hasPrefix("no ntuple rules") && $0.severity == .info })
    }

    func testForeignProgramAndMissingProgram() {
        var foreign = input(channels: [0], program: [counters(0)], received: [0])
        foreign.attachedProgramID = 99
        let found = Doctor.diagnose(foreign).first { $0.title.contains("foreign XDP program (id 99)") }
        XCTAssertEqual(found?.severity, .error)
        XCTAssertEqual(found?.fix?.hasPrefix("ip link set dev eth9 xdp off"), true, "\(String(describing: found))")

        var none = input(channels: [0], program: [counters(0)], received: [0])
        none.attachedProgramID = nil
        XCTAssertTrue(Doctor.diagnose(none).contains { $0.severity == .error && $0.title.hasPrefix("no XDP program") })
    }

    func testNoPipelineAsksToStartOne() {
        var stopped = DoctorInput(interface: "eth9", rxQueues: 2)
        stopped.attachedProgramID = 5
        let findings = Doctor.diagnose(stopped)
        XCTAssertEqual(findings.first?.severity, .error)
        XCTAssertEqual(findings.first?.fix, "sluicectl pipeline start eth9")
        XCTAssertTrue(findings.contains { $0.severity == .warning && $0.fix == "ip link set dev eth9 xdp off" })
    }

    func testRulesToUnboundQueuesAndMissingRulesThePluginNeeds() {
        var input = input(channels: [2], program: [counters(2, redirected: 1)], received: [1])
        input.rxQueues = 4
        input.rulesProblem = nil
        input.rules = [DoctorInput.Rule(location: 3, queue: 1, summary: "flow-type udp4 dst-port 4242 action queue 1")]
        input.pipeline?.steeringRequired = true
        let findings = Doctor.diagnose(input)
        let stray = findings.first { $0.title.hasPrefix("ntuple rule 3 steers to queue 1") }
        XCTAssertEqual(stray?.severity, .warning, "\(findings)")
        XCTAssertEqual(stray?.fix?.hasPrefix("ethtool -N eth9 delete 3"), true)
        let missing = findings.first { $0.title.hasPrefix("channel 2 (steer queue 2) has no ntuple rule") }
        XCTAssertEqual(missing?.fix, "sluicectl steer add eth9 flow-type udp4 dst-port PORT channel 2")
    }

    /// Old mlx5 (4 channels): queues 4-7 exist only as zero-copy AF_XDP
    /// queues. A rule to one that no socket of any process reads makes the
    /// NIC drop its traffic — with or without a pipeline, whoever added it.
    func testRulesToZeroCopyQueuesNobodyReadsAreErrors() throws {
        var input = DoctorInput(interface: "eth2", ifindex: 5, rxQueues: 8)
        input.driver = "mlx5_core"
        input.receiveChannels = 4
        input.boundQueues = [5]
        input.rules = [
            DoctorInput.Rule(location: 1021, queue: 6, summary: "flow-type udp4 dst-port 4791 action 6"),
            DoctorInput.Rule(location: 1022, queue: 5, summary: "flow-type udp4 dst-port 4792 action 5"),
            DoctorInput.Rule(location: 1023, queue: 2, summary: "flow-type udp4 dst-port 4793 action 2"),
        ]
        let findings = Doctor.diagnose(input)
        let dropping = findings.filter { $0.title.contains("which no AF_XDP socket reads") }
        XCTAssertEqual(dropping.map(\.queue), [6], "only the rule to the unread zero-copy queue: \(findings)")
        let finding = try XCTUnwrap(dropping.first)
        XCTAssertEqual(finding.severity, .error)
        XCTAssertEqual(finding.title, "ntuple rule 1021 steers to queue 6, which no AF_XDP socket reads: the NIC drops what it matches")
        XCTAssertTrue(finding.evidence.contains("AF_XDP sockets are bound to queues: 5"), "\(finding.evidence)")
        XCTAssertEqual(finding.fix, "ethtool -N eth2 delete 1021, or start the pipeline that reads queue 6 first")

        // While a pipeline runs it is reported once, as the error, not again as a stray rule.
        input.pipeline = DoctorInput.Pipeline(
            running: true, plugin: "mlx5", attachMode: "native", programID: 9,
            mappings: [DoctorInput.Mapping(channel: 1, bindQueue: 5, steerQueue: 5)],
            sockets: [DoctorInput.Socket(channel: 1, queue: 5, zeroCopy: true, fallbackReason: nil, rxPackets: 10)],
            program: [])
        input.attachedProgramID = 9
        let running = Doctor.diagnose(input)
        XCTAssertEqual(running.filter { $0.queue == 6 }.map(\.severity), [.error], "\(running)")
        // Without sock_diag the pipeline's own sockets are what is known to read.
        input.boundQueues = nil
        XCTAssertEqual(Doctor.diagnose(input).filter { $0.title.contains("no AF_XDP socket reads") }.map(\.queue), [6])
    }

    func testKernelDropsAndPrefilterPassingEverything() {
        var input = input(channels: [0], program: [counters(0, passed: 40)], received: [0])
        input.pipeline?.prefilter = true
        input.pipeline?.sockets[0].ringFull = 7
        let findings = Doctor.diagnose(input)
        XCTAssertTrue(findings.contains { $0.severity == .warning && $0.title.contains("passed all 40 packets of bound queue 0") }, "\(findings)")
        XCTAssertTrue(findings.contains { $0.severity == .warning && $0.title.contains("dropped 7 packets") }, "\(findings)")
    }

    func testTraceLinesParseAndRedirectErrorsBecomeAnErrorWithTheMTUFix() throws {
        let line = "          <idle>-0       [001] ..s2.  8123.456789: xdp_redirect_err: prog_id=41 action=REDIRECT ifindex=7 to_ifindex=0 err=-28 map_id=12 map_index=1"
        let event = try XCTUnwrap(TraceEvent.parse(line[...]))
        XCTAssertEqual(event.event, "xdp_redirect_err")
        XCTAssertEqual(event.progID, 41)
        XCTAssertEqual(event.action, "REDIRECT")
        XCTAssertEqual(event.ifindex, 7)
        XCTAssertEqual(event.toIfindex, 0)
        XCTAssertEqual(event.err, -28)
        XCTAssertEqual(event.mapID, 12)
        XCTAssertEqual(event.mapIndex, 1)
        XCTAssertEqual(event.timestamp, 8123.456789)
        let exception = try XCTUnwrap(TraceEvent.parse(
            "ksoftirqd/0-15 [000] ..s1. 12.5: xdp_exception: prog_id=3 action=ABORTED ifindex=2"[...]))
        XCTAssertEqual(exception.event, "xdp_exception")
        XCTAssertEqual(exception.action, "ABORTED")
        XCTAssertNil(TraceEvent.parse("# tracer: nop"[...]))
        XCTAssertNil(TraceEvent.parse("garbage without brackets"[...]))
        XCTAssertNil(TraceEvent.parse(String(repeating: "]: x: ", count: 500)[...])?.ifindex)

        var input = input(channels: [0], program: [counters(0, redirected: 10)], received: [10])
        var elsewhere = event
        elsewhere.ifindex = 8
        input.traceEvents = [event, event, elsewhere]
        let finding = try XCTUnwrap(Doctor.diagnose(input).first)
        XCTAssertEqual(finding.severity, .error)
        XCTAssertTrue(finding.title.hasPrefix("2 xdp:xdp_redirect_err event(s) on eth9"), finding.title)
        XCTAssertTrue(finding.evidence[0].contains("err=-28 prog_id=41 (Sluice's program)"), "\(finding.evidence)")
        XCTAssertEqual(finding.fix?.contains("ip link set dev eth9 mtu 1500"), true)
    }

    func testSortingIsWorstFirstThenByQueue() {
        let make = { (severity: DoctorFinding.Severity, queue: UInt32?) in
            DoctorFinding(severity: severity, interface: "x", queue: queue, title: "t", evidence: [], fix: nil)
        }
        let sorted = Doctor.sorted([make(.info, nil), make(.warning, 2), make(.error, nil), make(.warning, 0), make(.ok, nil)])
        XCTAssertEqual(sorted.map(\.severity), [.error, .warning, .warning, .info, .ok])
        XCTAssertEqual(sorted[1].queue, 0)
    }

    /// A flood of successful redirects after a few failures (another
    /// pipeline's traffic, or an interface with the same ifindex in another
    /// namespace) pushes the failures out of the subscribers' window but not
    /// out of what doctor reads; subscribers learn how many they lost.
    func testTraceLogKeepsFailuresThroughAFloodOfOtherEvents() {
        var log = TraceEventLog()
        let cursor = log.end
        var failure = TraceEvent(event: "xdp_redirect_err")
        failure.err = -28
        log.append(contentsOf: [failure, failure, failure])
        for _ in 0..<3 { log.append(contentsOf: Array(repeating: TraceEvent(event: "xdp_redirect"), count: 2 * TraceEventLog.capacity)) }
        XCTAssertEqual(log.failures.count, 3)
        XCTAssertEqual(log.failures.map(\.err), [-28, -28, -28])
        let read = log.read(from: cursor)
        XCTAssertEqual(read.events.count, TraceEventLog.capacity)
        XCTAssertEqual(read.lost, 3 + 6 * UInt64(TraceEventLog.capacity) - UInt64(TraceEventLog.capacity))
        XCTAssertEqual(read.next, log.end)
        XCTAssertTrue(log.read(from: log.end).events.isEmpty)

        log.append(contentsOf: Array(repeating: failure, count: TraceEventLog.failureCapacity + 5))
        XCTAssertEqual(log.failures.count, TraceEventLog.failureCapacity, "bounded")
    }
}
