// The Swift side of the ring micro-benchmark (the C side is tools/bench/ring_c.c):
// Sluice's SPSCRing moving 64-bit items between two threads pinned to CPUs 0
// and 1, in batches, spinning (no doorbell) so that only the ring is measured.
//
//   sluice-bench ring BATCH ITEMS [CAPACITY]
//     prints "swift batch B items N seconds S items_per_second R"
import CSluiceShims
import Foundation
import SluiceDataPath

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

let arguments = CommandLine.arguments.dropFirst()
guard arguments.first == "ring", arguments.count >= 3 else { fail("usage: sluice-bench ring BATCH ITEMS [CAPACITY]") }
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
