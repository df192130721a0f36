import Foundation
import SluiceDataPath
import SluiceModules
import SluiceTestSupport
import Synchronization
import XCTest

/// Counts what the data path hands it, per rx queue and per UDP destination
/// port (the test flows differ in port). Locked per batch: RX threads of
/// several sockets share it.
final class TallyModule: PacketModule {
    let kind = "test-tally"
    private let tally = Mutex<(perQueue: [UInt16: Int], perPort: [UInt16: Int])>(([:], [:]))
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
        tally.withLock { tally in
            for index in 0..<batch.count {
                tally.perQueue[batch.descriptors[index].queue, default: 0] += 1
                tally.perPort[batch.headers[index].destinationPort, default: 0] += 1
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
    }

    var queues: [UInt16: Int] { tally.withLock { $0.perQueue } }
    var ports: [UInt16: Int] { tally.withLock { $0.perPort } }
    var total: Int { queues.values.reduce(0, +) }

    func snapshot() -> ModuleSnapshot {
        ModuleSnapshot(kind: kind, counters: ["packets": UInt64(total)])
    }
}

/// Whether `ip link` shows any XDP program on the interface.
func hasXDPProgram(_ lab: Lab) throws -> Bool {
    let output = try lab.inApp(["ip", "-d", "link", "show", "dev", lab.appInterface], check: true).stdout
    return output.contains("prog/xdp")
}
