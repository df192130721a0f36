import XCTest

final class SluicePluginHostTestsPlaceholder: XCTestCase {
    func testPlaceholder() {}
}
