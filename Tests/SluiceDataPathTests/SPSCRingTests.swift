import Foundation
import Synchronization
import XCTest

import SluiceDataPath

final class SPSCRingTests: XCTestCase {
    func testCapacityMustBeAPowerOfTwo() {
        for bad in [0, 1, 3, 1000, -4, (1 << 30) + 1, 1 << 31] {
            XCTAssertThrowsError(try SPSCRing<Int>(capacity: bad), "capacity \(bad)") { error in
                XCTAssertEqual((error as? RingCapacityError)?.requested, bad)
                XCTAssertTrue("\(error)".contains("\(bad)"))
            }
        }
        XCTAssertEqual(try SPSCRing<Int>(capacity: 1024).capacity, 1024)
    }

    /// A full ring takes only what fits and says so; the data path counts the
    /// remainder as ring-full drops.
    func testFullRingReturnsShortCount() throws {
        let ring = try SPSCRing<UInt64>(capacity: 8)
        let items = (0..<12).map(UInt64.init)
        XCTAssertEqual(items.withUnsafeBufferPointer { ring.enqueue(from: $0) }, 8)
        XCTAssertEqual(items.withUnsafeBufferPointer { ring.enqueue(from: $0) }, 0)
        var out = [UInt64](repeating: 99, count: 3)
        XCTAssertEqual(out.withUnsafeMutableBufferPointer { ring.dequeue(into: $0) }, 3)
        XCTAssertEqual(out, [0, 1, 2])
        // Wraps: 3 free slots, two at the end of storage... indices 8..10 land at 0..2.
        XCTAssertEqual(Array(items[8...]).withUnsafeBufferPointer { ring.enqueue(from: $0) }, 3)
        var rest = [UInt64](repeating: 0, count: 16)
        XCTAssertEqual(rest.withUnsafeMutableBufferPointer { ring.dequeue(into: $0) }, 8)
        XCTAssertEqual(Array(rest.prefix(8)), [3, 4, 5, 6, 7, 8, 9, 10])
        XCTAssertEqual(rest.withUnsafeMutableBufferPointer { ring.dequeue(into: $0) }, 0)
    }

    /// Two threads, millions of items, random batch sizes that straddle the
    /// end of the storage: every item arrives once, in order.
    func testTwoThreadStressKeepsOrderWithoutLossOrDuplicates() throws {
        try stress(total: 4_000_000, capacity: 1024, maxBatch: 97, sleeping: false)
    }

    /// The same with a consumer that sleeps on the doorbell whenever the ring
    /// is empty: no lost wake-up (the test would hang, so it has a deadline).
    func testSleepingConsumerIsAlwaysWoken() throws {
        try stress(total: 1_000_000, capacity: 64, maxBatch: 13, sleeping: true)
    }

    private func stress(total: Int, capacity: Int, maxBatch: Int, sleeping: Bool) throws {
        let ring = try SPSCRing<Int>(capacity: capacity)
        let doorbell = try Doorbell()
        let done = DispatchSemaphore(value: 0)
        let result = ConsumerResult()
        let consumer = Thread {
            var expected = 0
            var buffer = [Int](repeating: -1, count: maxBatch)
            var generator = SystemRandomNumberGenerator()
            while expected < total, !result.isFinished {
                let want = Int.random(in: 1...maxBatch, using: &generator)
                let got = buffer.withUnsafeMutableBufferPointer {
                    ring.dequeue(into: UnsafeMutableBufferPointer(rebasing: $0[0..<want]))
                }
                if got == 0 {
                    if sleeping {
                        if ring.prepareToSleep() {
                            if !doorbell.wait(timeoutMilliseconds: 1000) { result.timeouts += 1 }
                        }
                        ring.cancelSleep()
                    }
                    continue
                }
                for value in buffer[0..<got] {
                    if value != expected {
                        result.firstError = result.firstError ?? "expected \(expected), got \(value)"
                    }
                    expected += 1
                }
            }
            result.received = expected
            result.finish()
            done.signal()
        }
        consumer.start()
        var next = 0
        var batch = [Int](repeating: 0, count: maxBatch)
        var fullResults = 0
        // A lost wake-up would make the consumer sleep out its timeouts: the
        // producer gives up at a deadline so that the test fails instead of hanging.
        let deadline = ContinuousClock.now + .seconds(60)
        while next < total, !result.isFinished, ContinuousClock.now < deadline {
            let size = min(Int.random(in: 1...maxBatch), total - next)
            for index in 0..<size { batch[index] = next + index }
            let taken = batch.withUnsafeBufferPointer {
                ring.enqueue(from: UnsafeBufferPointer(rebasing: $0[0..<size]))
            }
            if taken < size { fullResults += 1 }
            if taken > 0, ring.takeWakeupRequest() { doorbell.ring() }
            next += taken  // the rest is offered again: in order, none skipped
        }
        XCTAssertEqual(next, total, "the producer offered everything before the deadline")
        if next < total { result.finish() }
        XCTAssertEqual(done.wait(timeout: .now() + 120), .success, "consumer finished")
        XCTAssertNil(result.firstError)
        XCTAssertEqual(result.received, total)
        XCTAssertGreaterThan(fullResults, 0, "the producer outran the consumer at least once")
        if sleeping { XCTAssertEqual(result.timeouts, 0, "a wait ended by timeout: a wake-up was lost") }
    }
}

// Unchecked: the counters are written by the consumer before it signals `done`, read after the wait.
private final class ConsumerResult: @unchecked Sendable {
    /// Set when the consumer stops early, so a broken ring fails the test instead of hanging it.
    private let finished = Mutex(false)
    var isFinished: Bool { finished.withLock { $0 } }
    func finish() { finished.withLock { $0 = true } }
    var received = 0
    var timeouts = 0
    var firstError: String?
}
