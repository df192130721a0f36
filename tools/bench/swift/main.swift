// The Swift side of the ring micro-benchmark (the C side is tools/bench/ring_c.c):
// Sluice's SPSCRing moving 64-bit items between two threads pinned to CPUs 0
// and 1, in batches, spinning (no doorbell) so that only the ring is measured.
//
//   sluice-bench ring BATCH ITEMS [CAPACITY]
//     prints "swift batch B items N seconds S items_per_second R"
import CSluiceShims
import Foundation
import SluiceDataPath
import SluiceModules
import SluiceProtocol

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("sluice-bench: error: \(message)\n".utf8))
    exit(2)
}

func ringBenchmark(batch: Int, total: Int, capacity: Int) throws {
    let ring = try SPSCRing<UInt64>(capacity: capacity)
    let expected = UInt64(total) * UInt64(total - 1) / 2
    let finished = DispatchSemaphore(value: 0)
    // Written by the consumer thread before it signals `finished`.
    final class Box: @unchecked Sendable { var checksum: UInt64 = 0 }
    let box = Box()
    let consumer = Thread {
        _ = sluice_pin_current_thread(1)
        let items = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: batch)
        defer { items.deallocate() }
        var sum: UInt64 = 0
        var received = 0
        while received < total {
            let count = ring.dequeue(into: items)
            for index in 0..<count { sum &+= items[index] }
            received += count
        }
        box.checksum = sum
        finished.signal()
    }
    _ = sluice_pin_current_thread(0)
    let items = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: batch)
    defer { items.deallocate() }
    let started = DispatchTime.now().uptimeNanoseconds
    consumer.start()
    var sent = 0
    while sent < total {
        let count = min(batch, total - sent)
        for index in 0..<count { items[index] = UInt64(sent + index) }
        var done = 0
        while done < count {
            done += ring.enqueue(from: UnsafeBufferPointer(rebasing: items[done..<count]))
        }
        sent += count
    }
    finished.wait()
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
    guard box.checksum == expected else { fail("ring checksum \(box.checksum), expected \(expected): items lost or reordered") }
    print("swift batch \(batch) items \(total) seconds \(String(format: "%.3f", seconds)) items_per_second \(String(format: "%.0f", Double(total) / seconds))")
}

/// The data path alone, without the daemon, for `tools/bench/run --profile`:
/// one pipeline on IFACE queue 0 (copy mode, RX thread and worker on CPU 1),
/// for SECONDS or until killed. valgrind cannot run sluiced itself (3.19
/// crashes on its signal handling), and the control plane would only add
/// threads to the profile. Prints "ready" once the socket is bound, and the
/// packets received when SECONDS are up.
func receiveBenchmark(interface: String, mode: ProcessingMode, seconds: Int, modules: [ModuleKind]) throws {
    var config = DataPathConfig(interface: interface)
    config.mode = mode
    config.bindMode = .copy
    config.rxCPUs = [1]
    config.workerCPUs = [1]
    // etc/sluice.toml's defaults, as sluiced runs (and as xsk_drop.c sizes
    // its rings): the fill ring holds every frame.
    config.geometry.frameSize = 4096
    config.geometry.frameCount = 4096
    config.geometry.fillRingSize = 4096
    let pipeline = try Pipeline(config: config, bindings: [.identity(channel: 0)]) { _ in
        try modules.map { try $0.descriptor.make([:]) }
    }
    // Unbuffered: the caller waits for this line while the process runs on.
    FileHandle.standardOutput.write(Data("ready\n".utf8))
    sleep(UInt32(seconds))
    pipeline.stop()
    let received = pipeline.statistics().sockets.reduce(UInt64(0)) { $0 + $1.rxPackets }
    print("received \(received)")
}

let arguments = CommandLine.arguments.dropFirst()
if arguments.first == "rx" {
    let usage = "usage: sluice-bench rx IFACE inline|pipelined SECONDS [MODULE...]"
    guard arguments.count >= 4 else { fail(usage) }
    let values = Array(arguments.dropFirst())
    guard let mode = ProcessingMode(rawValue: values[1]) else { fail(usage) }
    guard let seconds = Int(values[2]), (1...86_400).contains(seconds) else { fail("SECONDS: expected 1-86400") }
    var modules: [ModuleKind] = []
    for name in values.dropFirst(3) {
        guard let kind = ModuleKind(rawValue: name) else { fail("unknown module '\(name)'") }
        modules.append(kind)
    }
    do {
        try receiveBenchmark(interface: values[0], mode: mode, seconds: seconds, modules: modules)
    } catch {
        fail("\(error)")
    }
    exit(0)
}
guard arguments.first == "ring", arguments.count >= 3 else { fail("usage: sluice-bench ring BATCH ITEMS [CAPACITY] | rx IFACE MODE SECONDS [MODULE...]") }
let values = arguments.dropFirst().map { Int($0) }
guard let batch = values[0], (1...1024).contains(batch) else { fail("BATCH: expected 1-1024") }
guard let total = values[1], total > 0, total <= 1 << 40 else { fail("ITEMS: expected 1 to 2^40") }
let capacity = values.count > 2 ? values[2] : 4096
guard let capacity else { fail("CAPACITY: expected a power of two") }
do {
    try ringBenchmark(batch: batch, total: total, capacity: capacity)
} catch {
    fail("\(error)")
}
