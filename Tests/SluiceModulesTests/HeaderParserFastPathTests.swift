import SluiceTestSupport
import XCTest

@testable import SluiceModules

/// The common-case pass (untagged IPv4 without options, UDP or TCP) must
/// give exactly what the general parser gives, malformed frames included:
/// it either writes the same headers or declines and leaves the frame to it.
final class HeaderParserFastPathTests: XCTestCase {
    func parsedBothWays(_ frame: [UInt8], wireLength: Int? = nil) -> (fast: PacketHeaders?, general: PacketHeaders) {
        frame.withUnsafeBytes { bytes in
            let base = bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 0x1000)!
            let parsedFrame = HeaderParser.Frame(base: base, length: frame.count, wireLength: wireLength ?? frame.count)
            var fast = PacketHeaders()
            let taken = HeaderParser.parseCommonIPv4(parsedFrame, into: &fast)
            var general = PacketHeaders()
            general.malformation = HeaderParser.parseEthernet(parsedFrame, into: &general)
            return (taken ? fast : nil, general)
        }
    }

    func testCommonFramesTakeTheFastPathWithTheGeneralParsersResult() {
        let frames = [
            FrameBuilder(network: FrameBuilder.ipv4("192.0.2.1", "198.51.100.7"), transport: .udp(source: 4000, destination: 53)).build(),
            FrameBuilder(network: FrameBuilder.ipv4(), transport: .tcp(source: 443, destination: 50000)).build(),
            FrameBuilder(network: FrameBuilder.ipv4(), transport: .tcp(source: 1, destination: 2, options: [2, 4, 0x05, 0xB4])).build(),
        ]
        for frame in frames {
            let (fast, general) = parsedBothWays(frame)
            XCTAssertEqual(general.malformation, .none)
            XCTAssertEqual(fast, general)
            // The batch entry point and the single-frame one agree too.
            XCTAssertEqual(frame.withUnsafeBytes { HeaderParser.parse(frame: $0.baseAddress!, length: frame.count) }, general)
        }
    }

    func testOtherFramesAreLeftToTheGeneralParser() {
        let frames = [
            FrameBuilder(tags: [(0x8100, 7)], network: FrameBuilder.ipv4(), transport: .udp(source: 1, destination: 2)).build(),
            FrameBuilder(network: .ipv4(source: [10, 0, 0, 1], destination: [10, 0, 0, 2], options: [1, 1, 1, 0]),
                         transport: .udp(source: 1, destination: 2)).build(),
            FrameBuilder(network: .ipv4(source: [10, 0, 0, 1], destination: [10, 0, 0, 2], fragmentField: 0x2000),
                         transport: .udp(source: 1, destination: 2)).build(),
            FrameBuilder(network: FrameBuilder.ipv6(), transport: .udp(source: 1, destination: 2)).build(),
            FrameBuilder(network: FrameBuilder.ipv4(), transport: .icmp(type: 8)).build(),
        ]
        for frame in frames {
            XCTAssertNil(parsedBothWays(frame).fast)
        }
    }

    /// Mutated and cut-off UDP and TCP frames, and packets longer than the
    /// bytes at hand (a multi-buffer chain's first frame): whenever the fast
    /// path answers, it answers what the general parser does.
    func testMutatedFramesAgreeWithTheGeneralParser() {
        let seed = ProcessInfo.processInfo.environment["SLUICE_TEST_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 0...UInt64.max)
        var generator = SplitMix64(seed: seed)
        let seeds = [
            FrameBuilder(network: FrameBuilder.ipv4(), transport: .udp(source: 1, destination: 2)).build(),
            FrameBuilder(network: FrameBuilder.ipv4(), transport: .tcp(source: 1, destination: 2, options: [1, 1, 1, 0])).build(),
        ]
        // Bytes whose values the fast path decides on.
        let decisive = [12, 13, 14, 15, 16, 17, 20, 21, 23, 38, 39, 46]
        var taken = 0, declined = 0
        for iteration in 0..<50_000 {
            var frame = seeds[iteration % seeds.count]
            for _ in 0..<Int.random(in: 0...3, using: &generator) {
                let offset = Bool.random(using: &generator)
                    ? decisive.randomElement(using: &generator)! : Int.random(in: 12..<frame.count, using: &generator)
                frame[offset] = UInt8.random(in: 0...255, using: &generator)
            }
            if Int.random(in: 0..<4, using: &generator) == 0 {
                frame = Array(frame.prefix(Int.random(in: 0...frame.count, using: &generator)))
            }
            let wireLength = Int.random(in: 0..<4, using: &generator) == 0
                ? frame.count + Int.random(in: 0...200, using: &generator) : frame.count
            let (fast, general) = parsedBothWays(frame, wireLength: wireLength)
            if let fast {
                taken += 1
                XCTAssertEqual(fast, general, "seed \(seed), iteration \(iteration), frame \(frame)")
                XCTAssertEqual(general.malformation, .none)
            } else {
                declined += 1
            }
        }
        // Both outcomes were exercised.
        XCTAssertGreaterThan(taken, 1000, "seed \(seed)")
        XCTAssertGreaterThan(declined, 1000, "seed \(seed)")
    }
}
