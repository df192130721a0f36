import SluiceDataPath
import XCTest

/// Bad configuration is refused before anything touches the kernel, with an
/// error that names the setting, the interface or the queue.
final class ConfigValidationTests: XCTestCase {
    private func startError(
        _ configure: (inout DataPathConfig) -> Void, interface: String = "lo",
        bindings: [ChannelBinding] = [.identity(channel: 0)]
    ) -> String {
        var config = DataPathConfig(interface: interface)
        configure(&config)
        do {
            let pipeline = try Pipeline(config: config, bindings: bindings, makeModules: { _ in [] })
            pipeline.stop()
            return "started"
        } catch {
            return "\(error)"
        }
    }

    func testGeometryAndSizesAreChecked() {
        XCTAssertEqual(startError { $0.geometry.frameSize = 3000 }, "frame size 3000 is not supported; use 2048 or 4096")
        XCTAssertEqual(startError { $0.geometry.frameCount = 10 }, "frame count 10 is outside 64...1048576")
        XCTAssertEqual(startError { $0.geometry.rxRingSize = 1000 }, "rx ring size 1000 is not a power of two in 64...65536")
        XCTAssertEqual(startError { $0.geometry.fillRingSize = 1 << 20 }, "fill ring size 1048576 is not a power of two in 64...65536")
        XCTAssertEqual(startError { $0.batchSize = 0 }, "batch size 0 is outside 1...1024")
        XCTAssertEqual(startError { $0.batchSize = 1024; $0.geometry.fillRingSize = 512 }, "batch size 1024 exceeds the fill ring (512)")
        XCTAssertEqual(startError { $0.handoffRingSize = 100 }, "hand-off ring size 100 is not a power of two in 2...1048576")
        XCTAssertEqual(startError { $0.pollTimeoutMilliseconds = 0 }, "poll timeout 0 ms is outside 1...60000")
        XCTAssertEqual(startError { $0.busyPoll = .init(microseconds: 0, budget: 64) },
                       "busy poll of 0 µs, budget 64 for lo is outside 1...1000000 µs, budget 1...65535")
        XCTAssertEqual(startError { $0.busyPoll = .init(microseconds: 20, budget: 65536) },
                       "busy poll of 20 µs, budget 65536 for lo is outside 1...1000000 µs, budget 1...65535")
        XCTAssertEqual(startError { $0.rxCPUs = [-1] }, "CPU -1 is outside 0...1023")
    }

    func testBindingsAreChecked() {
        XCTAssertEqual(startError({ _ in }, bindings: []), "no channels to bind on lo")
        XCTAssertEqual(
            startError({ _ in }, bindings: [.identity(channel: 0), ChannelBinding(channel: 1, bindQueue: 0, xskmapKey: 1)]),
            "two channels on lo bind queue 0 or XSKMAP key 1")
        // lo has one rx queue.
        XCTAssertEqual(
            startError({ _ in }, bindings: [ChannelBinding(channel: 0, bindQueue: 5, xskmapKey: 5)]),
            "lo has 1 rx queues; channel 0 asks for queue 5")
        XCTAssertTrue(startError({ _ in }, interface: "nosuchif0").hasPrefix("cannot read the rx queues of nosuchif0"))
        XCTAssertEqual(startError({ _ in }, interface: "../lo"), "invalid interface name '../lo'")
    }

    func testXSKMapKeysAndPrefilterAreBounded() {
        XCTAssertEqual(
            startError({ _ in }, bindings: [ChannelBinding(channel: 0, bindQueue: 0, xskmapKey: 5000)]),
            "XSKMAP size 5001 for lo is outside 1...4096")
        XCTAssertEqual(
            startError { $0.prefilter = Prefilter(protocols: [.udp], destinationPorts: Array(repeating: 1...2, count: 9)) },
            "prefilter for lo has 9 port ranges; at most 8")
    }
}
