import XCTest

final class SluiceDaemonTestsPlaceholder: XCTestCase {
    func testPlaceholder() {}
}
