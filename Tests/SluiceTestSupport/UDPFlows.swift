import Foundation

/// Frames and traffic for a lab: UDP flows from the generator to the app end.
public struct UDPFlows {
    public let lab: Lab
    /// Destination ports, one flow each (source port = destination + 1000).
    public let ports: [UInt16]

    public init(lab: Lab, ports: [UInt16]) {
        self.lab = lab
        self.ports = ports
    }

    /// For each flow in turn, sends `perWorker` frames from each of two
    /// trafgen workers (trafgen pins them to CPU 0 and 1, and XPS maps those
    /// CPUs to the generator's tx queues, hence to known app rx queues).
    /// Every flow thus arrives exactly `2 * perWorker` times, half per worker.
    public func send(perWorker: Int) throws {
        try send(try frames(), perWorker: perWorker)
    }

    /// Sends arbitrary frames (e.g. malformed ones) the same way.
    public func send(_ frames: [[UInt8]], perWorker: Int) throws {
        for frame in frames {
            let config = "{ " + frame.map { String(format: "0x%02x", $0) }.joined(separator: ", ") + " }\n"
            let file = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("trafgen") + ".cfg")
            try config.write(to: file, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(at: file) }
            try lab.inGenerator(
                ["trafgen", "--dev", lab.generatorInterface, "--in", file.path, "--num", String(2 * perWorker),
                 "--cpus", "2", "--no-sock-mem", "--notouch-irq", "--no-cpu-stats"], check: true)
        }
    }

    /// The frames, one per flow, exactly as sent.
    public func frames() throws -> [[UInt8]] {
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
