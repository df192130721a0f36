import Foundation
import SluiceControl
import SluiceDataPath
import SluiceTestSupport
import XCTest

/// Jumbo frames end to end on the real daemon and a lab veth with MTU 9000
/// on both ends: 9000-byte UDP frames arrive as multi-buffer chains (2048-byte
/// UMEM frames: six frames each), are counted exactly, and pcap writes every
/// byte (read back by tcpdump); small frames alongside stay single-frame.
/// Without multi-buffer the pipeline refuses to start, naming the numbers.
final class JumboFrameTests: XCTestCase {
    private var lab: Lab?
    private var daemon: DaemonProcess?
    private var plugins: PluginDirectory?
    /// Where the pcap module writes; made by the test that captures.
    private var captureDirectory: String? { plugins.map { $0.path + "-jumbo" } }

    override func setUpWithError() throws {
        try Privilege.require()
        plugins = try PluginDirectory.withShippedPlugins()
    }

    override func tearDown() {
        daemon?.stop()
        try? lab?.down()
        if let captureDirectory { try? FileManager.default.removeItem(atPath: captureDirectory) }
        plugins?.remove()
    }

    /// Skips, with the reason, where the kernel cannot receive multi-buffer.
    private func requireMultiBuffer() throws {
        let fragments = KernelFeatures.detected(.xdpMultiBuffer)
        guard fragments.state == .found else { throw XCTSkip("this kernel has no \(fragments.title): \(fragments.detail)") }
        let sockets = KernelFeatures.detected(.xskMultiBuffer)
        guard sockets.state == .found else { throw XCTSkip("this kernel has no \(sockets.title): \(sockets.detail)") }
    }

    /// A lab whose two ends both have MTU 9000 (set before any XDP program:
    /// veth caps the MTU of a device with XDP attached).
    private func jumboLab(prefix: String) throws -> Lab {
        let lab = try Lab.up(queues: 2, prefix: prefix)
        self.lab = lab
        try lab.inApp(["ip", "link", "set", "dev", lab.appInterface, "mtu", "9000"], check: true)
        try lab.inGenerator(["ip", "link", "set", "dev", lab.generatorInterface, "mtu", "9000"], check: true)
        return lab
    }

    /// A UDP frame of exactly `length` bytes from the generator to the app
    /// end, its payload a counting pattern (so a misplaced byte shows).
    private func frame(_ lab: Lab, length: Int, port: UInt16) throws -> [UInt8] {
        func mac(_ text: String) -> [UInt8] {
            text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":").compactMap { UInt8($0, radix: 16) }
        }
        func be16(_ value: Int) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xff)] }
        let destination = mac(try lab.inApp(["cat", "/sys/class/net/\(lab.appInterface)/address"], check: true).stdout)
        let source = mac(try lab.inGenerator(["cat", "/sys/class/net/\(lab.generatorInterface)/address"], check: true).stdout)
        let payload = (0..<(length - 42)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let udp = be16(Int(port) + 1000) + be16(Int(port)) + be16(8 + payload.count) + [0, 0] + payload
        var ip: [UInt8] = [0x45, 0] + be16(20 + udp.count) + [0, 1, 0x40, 0, 64, 17, 0, 0]
        ip += lab.generatorAddress.split(separator: ".").compactMap { UInt8($0) }
        ip += lab.appAddress.split(separator: ".").compactMap { UInt8($0) }
        var sum: UInt32 = 0
        for index in stride(from: 0, to: 20, by: 2) { sum += UInt32(ip[index]) << 8 | UInt32(ip[index + 1]) }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        let checksum = ~UInt16(sum)
        ip[10] = UInt8(checksum >> 8); ip[11] = UInt8(checksum & 0xff)
        return destination + source + [0x08, 0x00] + ip + udp
    }

    /// Sends `frame` `count` times with trafgen. Through sendto (a gap of a
    /// few µs), not trafgen's TX ring, whose frames hold no 9000-byte packet
    /// (trafgen spins on it forever).
    private func send(_ frame: [UInt8], count: Int, from lab: Lab, gap: String = "5us") throws {
        let config = "{ " + frame.map { String(format: "0x%02x", $0) }.joined(separator: ", ") + " }\n"
        let file = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("trafgen") + ".cfg")
        try config.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        try lab.inGenerator(
            ["timeout", "60", "trafgen", "--dev", lab.generatorInterface, "--in", file.path, "--num", String(count),
             "--cpus", "1", "--gap", gap, "--no-sock-mem", "--notouch-irq", "--no-cpu-stats"], check: true)
    }

    /// A daemon running `pipeline` (keys and modules of `[pipeline]`) on the
    /// lab's app end, UDP only (the lab's neighbour discovery stays out).
    private func startDaemon(_ lab: Lab, mode: String, attach: String = "native", pipeline: String) throws -> DaemonProcess {
        let daemon = try DaemonProcess(extraConfig: DaemonProcess.pipelineConfig(
            pluginDirectory: plugins!.path, interface: lab.appInterface, mode: mode, modules: pipeline,
            interfaceOptions: "prefilter_protocols = [\"udp\"]\nattach_mode = \"\(attach)\""))
        self.daemon = daemon
        try daemon.start()
        try daemon.waitForPipeline()
        return daemon
    }

    private func pipeline() throws -> JSONValue? {
        try daemon?.call("stats.get")["result"]?["pipelines"]?.arrayValue?.first
    }

    private func counter(_ kind: String, _ name: String) throws -> Int {
        let module = try pipeline()?["modules"]?.arrayValue?.first { $0["kind"] == .string(kind) }
        return module?["counters"]?[name]?.integer(as: Int.self) ?? -1
    }

    /// In each mode, and with generic XDP: 100 frames of 9000 bytes and 100
    /// of 60, counted exactly (packets and bytes), the jumbo ones as chains,
    /// and pcap holding each frame whole and intact.
    func testJumboFramesAreCountedAndCapturedWholeInBothModesAndAttachModes() throws {
        try requireMultiBuffer()
        let captureDirectory = try XCTUnwrap(self.captureDirectory)
        try FileManager.default.createDirectory(atPath: captureDirectory, withIntermediateDirectories: true)
        // Generic XDP (skb mode) takes chains too, from the skb's fragments.
        for (mode, attach) in [("inline", "native"), ("pipelined", "native"), ("inline", "skb")] {
            let lab = try jumboLab(prefix: "sjf")
            let variant = "\(mode)-\(attach)"
            let capture = "\(captureDirectory)/\(variant).pcap"
            let daemon = try startDaemon(lab, mode: mode, attach: attach, pipeline: """
                [[pipeline.modules]]
                kind = "count"

                [[pipeline.modules]]
                kind = "pcap"
                path = "\(capture)"
                """)
            let jumbo = try frame(lab, length: 9000, port: 7001)
            let small = try frame(lab, length: 60, port: 7002)
            let perWorker = 50
            for frame in [jumbo, small] { try send(frame, count: 2 * perWorker, from: lab) }
            let sent = 2 * 2 * perWorker
            // Received or dropped somewhere on the way: nothing left in flight.
            try waitUntil("\(sent) packets accounted for (\(variant))", timeout: .seconds(20)) {
                let totals = try self.pipeline()?["totals"]
                return ["rx_packets", "kernel_dropped", "ring_full", "handoff_drops"]
                    .reduce(0) { $0 + (totals?[$1]?.integer(as: Int.self) ?? 0) } >= sent
            }
            let report = try XCTUnwrap(pipeline())
            XCTAssertEqual(report["totals"]?["rx_packets"], JSONValue(sent), "\(variant): \(report.serialized())")
            XCTAssertEqual(try counter("count", "packets"), sent, variant)
            XCTAssertEqual(try counter("count", "bytes"), 2 * perWorker * (9000 + 60), variant)
            XCTAssertEqual(try counter("count", "malformed"), 0, variant)
            let sockets = try XCTUnwrap(report["statistics"]?["sockets"]?.arrayValue)
            for socket in sockets {
                XCTAssertEqual(socket["multi_buffer"], true, socket.serialized())
                XCTAssertEqual(socket["invalid_chains"], 0, socket.serialized())
            }
            let chained = sockets.reduce(0) { $0 + ($1["multi_buffer_packets"]?.integer(as: Int.self) ?? 0) }
            XCTAssertEqual(chained, 2 * perWorker, "\(variant): every jumbo frame, and only those, as a chain")
            let rxBytes = sockets.reduce(0) { $0 + ($1["rx_bytes"]?.integer(as: Int.self) ?? 0) }
            XCTAssertEqual(rxBytes, 2 * perWorker * (9000 + 60), variant)
            let status = try runCommand(
                [DaemonProcess.sluicectlPath, "pipeline", "status", "--socket", daemon.socketPath], check: true).stdout
            XCTAssertTrue(status.contains("multi-buffer: "), status)

            // Stopping the pipeline flushes the files; every frame went back to
            // the fill ring once (a frame recycled twice or lost would show).
            XCTAssertEqual(try daemon.call("pipeline.stop")["ok"], true)
            let finalSockets = try XCTUnwrap(pipeline()?["statistics"]?["sockets"]?.arrayValue)
            for socket in finalSockets { XCTAssertEqual(socket["invalid_frames"], 0, socket.serialized()) }
            var packets: [TcpdumpPacket] = []
            for queue in 0..<2 { packets += try tcpdumpRead("\(captureDirectory)/\(variant)-queue\(queue).pcap") }
            XCTAssertEqual(packets.count, sent, variant)
            let jumbos = packets.filter { $0.length == 9000 }
            XCTAssertEqual(jumbos.count, 2 * perWorker, "\(variant): captured length = wire length 9000")
            XCTAssertTrue(jumbos.allSatisfy { $0.bytes == jumbo }, "\(variant): every jumbo frame intact")
            let smalls = packets.filter { $0.length == 60 }
            XCTAssertEqual(smalls.count, 2 * perWorker, variant)
            XCTAssertTrue(smalls.allSatisfy { $0.bytes == small }, variant)
            daemon.stop()
            self.daemon = nil
            try lab.down()
            self.lab = nil
        }
    }

    /// A UMEM of 64 frames (ten jumbo packets), batches of 4 frames (every
    /// chain is longer than a batch) and the smallest hand-off ring, under a
    /// burst of jumbo frames: every frame goes back to the fill ring exactly
    /// once. A frame recycled twice would show in `invalid_frames`, frames
    /// lost would starve the socket, and the paced frames sent after the
    /// burst would not all arrive.
    func testEveryFrameOfEveryChainIsRecycledOnceUnderPressure() throws {
        try requireMultiBuffer()
        for mode in ["inline", "pipelined"] {
            let lab = try jumboLab(prefix: "sjp")
            let daemon = try startDaemon(lab, mode: mode, pipeline: """
                frames = 64
                rx_ring = 64
                tx_ring = 64
                fill_ring = 64
                completion_ring = 64
                handoff_ring = 64
                batch_size = 4

                [[pipeline.modules]]
                kind = "count"
                """)
            let burst = try frame(lab, length: 9000, port: 7101)
            let paced = try frame(lab, length: 9000, port: 7102)
            try send(burst, count: 1000, from: lab, gap: "1us")
            // Sent after the burst on the same queue: counted once the burst is through.
            try send(paced, count: 20, from: lab, gap: "2ms")
            func flowPackets(_ port: Int) throws -> Int {
                let rows = try pipeline()?["modules"]?.arrayValue?.first { $0["kind"] == "count" }?["rows"]?.arrayValue ?? []
                return rows.first { $0["dport"] == .string(String(port)) }.flatMap { Int($0["packets"]?.stringValue ?? "") } ?? 0
            }
            try waitUntil("the 20 paced frames counted (\(mode))", timeout: .seconds(20)) { try flowPackets(7102) >= 20 }
            XCTAssertEqual(try flowPackets(7102), 20, "\(mode): nothing lost once the burst is over")
            let report = try XCTUnwrap(pipeline())
            let totals = try XCTUnwrap(report["totals"])
            let received = try XCTUnwrap(totals["rx_packets"]?.integer(as: Int.self))
            let handoffDrops = totals["handoff_drops"]?.integer(as: Int.self) ?? 0
            // Each burst frame counted, or dropped by the kernel for want of
            // free frames (measured: a fifth to a half), or at the hand-off.
            let dropped = ["kernel_dropped", "ring_full"].reduce(handoffDrops) { $0 + (totals[$1]?.integer(as: Int.self) ?? 0) }
            XCTAssertGreaterThan(try flowPackets(7101), 0, mode)
            XCTAssertEqual(try flowPackets(7101) + dropped, 1000, "\(mode): \(totals.serialized())")
            XCTAssertEqual(try counter("count", "packets"), received - handoffDrops, "\(mode): \(totals.serialized())")
            XCTAssertEqual(try counter("count", "bytes"), 9000 * (received - handoffDrops), mode)
            let sockets = try XCTUnwrap(report["statistics"]?["sockets"]?.arrayValue)
            for socket in sockets {
                XCTAssertEqual(socket["invalid_frames"], 0, "\(mode): \(socket.serialized())")
                XCTAssertEqual(socket["invalid_chains"], 0, "\(mode): \(socket.serialized())")
                XCTAssertEqual(socket["multi_buffer_packets"], socket["rx_packets"], "\(mode): \(socket.serialized())")
            }
            daemon.stop()
            self.daemon = nil
            try lab.down()
            self.lab = nil
        }
    }

    /// multi_buffer = "off" with MTU 9000: the pipeline refuses to start and
    /// the error names the MTU, the frame size, what a frame holds and the fixes.
    func testWithoutMultiBufferAnMTUAboveAFrameRefusesToStart() throws {
        let lab = try jumboLab(prefix: "sjr")
        let daemon = try DaemonProcess(extraConfig: DaemonProcess.pipelineConfig(
            pluginDirectory: plugins!.path, interface: lab.appInterface, mode: "inline", modules: """
                autostart = false

                [[pipeline.modules]]
                kind = "count"
                """, interfaceOptions: "multi_buffer = \"off\""))
        self.daemon = daemon
        try daemon.start()
        let reply = try daemon.call("pipeline.start")
        let message = try XCTUnwrap(reply["error"]?["message"]?.stringValue, reply.serialized())
        for part in ["MTU 9000 of \(lab.appInterface)", "9014 bytes", "multi_buffer = \"off\"", "2048-byte UMEM frame holds 1792",
                     "lower the MTU to 1778", "frame_size = 4096", "Linux 6.6"] {
            XCTAssertTrue(message.contains(part), "\(part) in: \(message)")
        }
        XCTAssertNotEqual(try pipeline()?["running"], true)
        XCTAssertFalse(try lab.inApp(["ip", "-d", "link", "show", "dev", lab.appInterface], check: true).stdout.contains("prog/xdp"),
                       "nothing attached")

        // The same interface at an MTU one frame holds starts (the peer too:
        // veth refuses XDP without frags when its peer's MTU needs them).
        try lab.inApp(["ip", "link", "set", "dev", lab.appInterface, "mtu", "1778"], check: true)
        try lab.inGenerator(["ip", "link", "set", "dev", lab.generatorInterface, "mtu", "1778"], check: true)
        XCTAssertEqual(try daemon.call("pipeline.start")["ok"], true)
        try daemon.waitForPipeline()
    }
}
