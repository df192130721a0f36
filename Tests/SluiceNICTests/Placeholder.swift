import XCTest

final class SluiceNICTestsPlaceholder: XCTestCase {
    func testPlaceholder() {}
}
