import Foundation
import SluiceDataPath
import SluiceModules
import SluiceTestSupport
import XCTest

/// Counts what the data path hands it, per rx queue and per UDP destination
/// port (the test flows differ in port). Locked per batch: RX threads of
/// several sockets share it.
final class TallyModule: PacketModule {
    let kind = "test-tally"
    private let lock = NSLock()
    private var perQueue: [UInt16: Int] = [:]
    private var perPort: [UInt16: Int] = [:]
    private let verdict: Verdict
    private let swapMACs: Bool
    private let workPerBatch: Duration

    /// `workPerBatch` busy-waits per batch to stand in for an expensive
    /// module; `swapMACs` turns frames around for `.transmit`.
    init(verdict: Verdict = .pass, swapMACs: Bool = false, workPerBatch: Duration = .zero) {
        self.verdict = verdict
        self.swapMACs = swapMACs
        self.workPerBatch = workPerBatch
    }

    func process(_ batch: PacketBatch) {
        lock.lock()
        defer { lock.unlock() }
        for index in 0..<batch.count {
            perQueue[batch.descriptors[index].queue, default: 0] += 1
            perPort[batch.headers[index].destinationPort, default: 0] += 1
            batch.descriptors[index].verdict = verdict
            if swapMACs {
                let frame = batch.bytes(at: index)
                for offset in 0..<6 { frame.swapAt(offset, offset + 6) }
            }
        }
        if workPerBatch > .zero {
            let clock = ContinuousClock(), end = clock.now.advanced(by: workPerBatch)
            while clock.now < end {}
        }
    }

    var queues: [UInt16: Int] { lock.withLock { perQueue } }
    var ports: [UInt16: Int] { lock.withLock { perPort } }
    var total: Int { queues.values.reduce(0, +) }

    func snapshot() -> ModuleSnapshot {
        ModuleSnapshot(kind: kind, counters: ["packets": UInt64(total)])
    }
}

/// Frames and traffic for a lab: UDP flows from the generator to the app end.
struct UDPFlows {
    let lab: Lab
    /// Destination ports, one flow each (source port = destination + 1000).
    let ports: [UInt16]

    /// For each flow in turn, sends `perWorker` frames from each of two
    /// trafgen workers (trafgen pins them to CPU 0 and 1, and XPS maps those
    /// CPUs to the generator's tx queues, hence to known app rx queues).
    /// Every flow thus arrives exactly `2 * perWorker` times, half per worker.
    func send(perWorker: Int) throws {
        for frame in try frames() {
            let config = "{ " + frame.map { String(format: "0x%02x", $0) }.joined(separator: ", ") + " }\n"
            let file = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("trafgen") + ".cfg")
            try config.write(to: file, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(at: file) }
            try lab.inGenerator(
                ["trafgen", "--dev", lab.generatorInterface, "--in", file.path, "--num", String(2 * perWorker),
                 "--cpus", "2", "--no-sock-mem", "--notouch-irq", "--no-cpu-stats"], check: true)
        }
    }

    func frames() throws -> [[UInt8]] {
        let destinationMAC = try mac(lab.inApp(["cat", "/sys/class/net/\(lab.appInterface)/address"], check: true).stdout)
        let sourceMAC = try mac(lab.inGenerator(["cat", "/sys/class/net/\(lab.generatorInterface)/address"], check: true).stdout)
        let source = ipv4(lab.generatorAddress), destination = ipv4(lab.appAddress)
        return ports.map { port in
            let payload = [UInt8](repeating: 0x5a, count: 18)
            var udp: [UInt8] = []
            udp += be16(port + 1000) + be16(port) + be16(UInt16(8 + payload.count)) + [0, 0]
            udp += payload
            var ip: [UInt8] = [0x45, 0] + be16(UInt16(20 + udp.count)) + [0, 1, 0x40, 0, 64, 17, 0, 0]
            ip += source + destination
            let checksum = internetChecksum(ip)
            ip[10] = UInt8(checksum >> 8); ip[11] = UInt8(checksum & 0xff)
            return destinationMAC + sourceMAC + [0x08, 0x00] + ip + udp
        }
    }

    private func mac(_ text: String) -> [UInt8] {
        text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":").compactMap { UInt8($0, radix: 16) }
    }
    private func ipv4(_ text: String) -> [UInt8] { text.split(separator: ".").compactMap { UInt8($0) } }
    private func be16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xff)] }
    private func internetChecksum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        for index in stride(from: 0, to: bytes.count, by: 2) {
            sum += UInt32(bytes[index]) << 8 | UInt32(index + 1 < bytes.count ? bytes[index + 1] : 0)
        }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }
}

/// Whether `ip link` shows any XDP program on the interface.
func hasXDPProgram(_ lab: Lab) throws -> Bool {
    let output = try lab.inApp(["ip", "-d", "link", "show", "dev", lab.appInterface], check: true).stdout
    return output.contains("prog/xdp")
}
