#if canImport(Glibc)
import Glibc
#endif
import SluiceModules
import XCTest

/// The latency module's histogram arithmetic (its end-to-end test with
/// stamped frames is SluiceDataPathTests' LatencyModuleTests).
final class LatencyHistogramTests: XCTestCase {
    /// The bucket arithmetic the percentiles rest on: every value falls in
    /// the bucket whose range holds it, and buckets are in order.
    func testBucketsCoverEveryValueInOrder() {
        var previousUpper: UInt64?
        for index in 0..<LatencyModule.bucketCount {
            let range = LatencyModule.range(ofBucket: index)
            if let previousUpper { XCTAssertEqual(range.lowerBound, previousUpper &+ 1, "bucket \(index)") }
            XCTAssertEqual(LatencyModule.bucket(of: range.lowerBound), index)
            XCTAssertEqual(LatencyModule.bucket(of: range.upperBound), index)
            previousUpper = range.upperBound
        }
        XCTAssertEqual(previousUpper, UInt64.max, "the last bucket ends at the largest value")
    }

    /// One 60-byte IPv4/UDP frame whose payload starts with `payload`.
    private static func frame(payload: [UInt8]) -> [UInt8] {
        var udp: [UInt8] = [0x23, 0x28, 0x23, 0x28, 0, 26, 0, 0] + payload
        udp += [UInt8](repeating: 0, count: 26 - udp.count)
        var ip: [UInt8] = [0x45, 0, 0, 46, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 77, 0, 2, 10, 77, 0, 1]
        ip[10] = 0; ip[11] = 0
        return [UInt8](repeating: 2, count: 12) + [0x08, 0x00] + ip + udp
    }

    private static func stamp(_ nanoseconds: UInt64) -> [UInt8] {
        Array("SLUICETS".utf8) + withUnsafeBytes(of: nanoseconds.littleEndian) { Array($0) }
    }

    private static func monotonicNow() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    /// Runs `module` over `frames`, laid out 2,048 bytes apart as in a UMEM.
    private static func process(_ module: LatencyModule, _ frames: [[UInt8]]) {
        let umem = UnsafeMutableRawPointer.allocate(byteCount: 2048 * frames.count, alignment: 4096)
        let descriptors = UnsafeMutablePointer<PacketDescriptor>.allocate(capacity: frames.count)
        let headers = UnsafeMutablePointer<PacketHeaders>.allocate(capacity: frames.count)
        defer { umem.deallocate(); descriptors.deallocate(); headers.deallocate() }
        headers.initialize(repeating: PacketHeaders(), count: frames.count)
        for (index, frame) in frames.enumerated() {
            frame.withUnsafeBytes { (umem + 2048 * index).copyMemory(from: $0.baseAddress!, byteCount: frame.count) }
            (descriptors + index).initialize(
                to: PacketDescriptor(address: UInt64(2048 * index), length: UInt32(frame.count), queue: 0))
        }
        let batch = PacketBatch(umem: umem, descriptors: descriptors, headers: headers, count: frames.count)
        HeaderParser.parse(batch)
        module.process(batch)
    }

    /// Stamped frames land in the histogram with their age; unstamped ones
    /// and stamps from the future are counted apart; two instances (two
    /// queues) merge into one histogram whose percentiles are recomputed,
    /// not added up.
    func testStampsUnstampedAndFutureFramesAndMerging() throws {
        let first = LatencyModule(), second = LatencyModule()
        let now = Self.monotonicNow()
        Self.process(first, [
            Self.frame(payload: Self.stamp(now - 1_000_000)),  // 1 ms old
            Self.frame(payload: Self.stamp(now - 1_000_000)),
            Self.frame(payload: Array("not a stamp, just data".utf8.prefix(18))),
            Self.frame(payload: Self.stamp(now + 3_600_000_000_000)),  // an hour ahead: another clock
        ])
        Self.process(second, [Self.frame(payload: Self.stamp(now - 100_000_000))])  // 100 ms old
        let elapsed = Self.monotonicNow() - now

        let one = first.snapshot()
        XCTAssertEqual(one.kind, "latency")
        XCTAssertEqual(one.counters["stamped"], 2)
        XCTAssertEqual(one.counters["unstamped"], 1)
        XCTAssertEqual(one.counters["future"], 1)
        let maximum = try XCTUnwrap(one.counters["max_ns"])
        XCTAssertTrue((1_000_000...1_000_000 + elapsed).contains(maximum), "\(one.counters)")
        XCTAssertEqual(one.rows.compactMap { UInt64($0["packets"] ?? "") }.reduce(0, +), 2)

        let merged = LatencyModule.snapshot(merging: [first, second])
        XCTAssertEqual(merged.counters["stamped"], 3)
        XCTAssertEqual(merged.counters["unstamped"], 1)
        XCTAssertEqual(merged.counters["future"], 1)
        let mergedMaximum = try XCTUnwrap(merged.counters["max_ns"])
        XCTAssertTrue((100_000_000...100_000_000 + elapsed).contains(mergedMaximum), "\(merged.counters)")
        // Two of three samples are ~1 ms: the median is in their bucket (12.5 % wide), p99 is the 100 ms one.
        let p50 = try XCTUnwrap(merged.counters["p50_ns"]), p99 = try XCTUnwrap(merged.counters["p99_ns"])
        XCTAssertTrue((1_000_000...1_125_000 + elapsed).contains(p50), "\(merged.counters)")
        XCTAssertEqual(p99, mergedMaximum)
        XCTAssertEqual(merged.rows.compactMap { UInt64($0["packets"] ?? "") }.reduce(0, +), 3)
    }
}
