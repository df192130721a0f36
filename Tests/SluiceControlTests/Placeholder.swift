import XCTest

final class SluiceControlTestsPlaceholder: XCTestCase {
    func testPlaceholder() {}
}
