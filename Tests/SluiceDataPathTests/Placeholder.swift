import XCTest

final class SluiceDataPathTestsPlaceholder: XCTestCase {
    func testPlaceholder() {}
}
