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
}
