import SluiceControl
import XCTest

final class RateTrackerTests: XCTestCase {
    func testTotalsGetPerSecondRatesFromTheSecondEventOn() {
        let tracker = RateTracker()
        let start = ContinuousClock.now
        let first: JSONValue = ["pipelines": [["interface": "a", "totals": ["rx_packets": 100, "rx_bytes": 6000]]]]
        let annotated = tracker.annotate(first, now: start)
        XCTAssertNil(annotated["pipelines"]?.arrayValue?.first?["rates"], "no rate without a previous sample")
        let second: JSONValue = ["pipelines": [["interface": "a", "totals": ["rx_packets": 600, "rx_bytes": 36000]]]]
        let rates = tracker.annotate(second, now: start + .milliseconds(500))["pipelines"]?.arrayValue?.first?["rates"]
        XCTAssertEqual(rates?["rx_packets"], .double(1000))
        XCTAssertEqual(rates?["rx_bytes"], .double(60000))
        // A restarted pipeline's counters start again from zero: no negative rate.
        let reset: JSONValue = ["pipelines": [["interface": "a", "totals": ["rx_packets": 10, "rx_bytes": 600]]]]
        let after = tracker.annotate(reset, now: start + .seconds(1))["pipelines"]?.arrayValue?.first?["rates"]
        XCTAssertEqual(after?["rx_packets"], .double(20))
    }
}
