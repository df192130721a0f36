import Foundation
import SluiceControl
import XCTest

/// InterfaceName is the one check of an interface name for config, control
/// requests, the command line, the NIC library, the plugin host and the data
/// path: what it lets through, every layer below trusts.
final class InterfaceNameTests: XCTestCase {
    func testNamesTheKernelAcceptsAreAccepted() throws {
        for name in ["eth0", "enp3s0f1np1", "veth-a.100", "a", "x23456789012345", "br_lab@1", "ünï"] {
            XCTAssertNil(InterfaceName.problem(name), name)
            XCTAssertEqual(try InterfaceName(name).rawValue, name)
        }
    }

    func testEveryNameTheKernelOrSluiceRefusesIsRefusedWithTheReason() {
        let refused: [(String, String)] = [
            ("", "empty"),
            ("x234567890123456", "16 bytes long"),
            ("ééééééééé", "18 bytes long"),
            (".", "not a valid interface name"), ("..", "not a valid interface name"),
            ("a/b", "contains '/'"), ("eth0:1", "contains '/', ':'"), ("a b", "whitespace"),
            ("a\tb", "whitespace"), ("a\nb", "whitespace"), ("a\u{0}b", "NUL"),
            ("a\u{1}b", "control character 0x1"), ("a\u{7f}", "control character 0x7f"),
        ]
        for (name, reason) in refused {
            let problem = InterfaceName.problem(name)
            XCTAssertNotNil(problem, "\(name.debugDescription) must be refused")
            XCTAssertTrue(problem?.contains(reason) == true, "\(name.debugDescription): \(problem ?? "nil")")
            XCTAssertThrowsError(try InterfaceName(name)) { error in
                XCTAssertEqual((error as? InterfaceNameError)?.problem, problem)
            }
        }
    }

    func testOnTheWireAnInterfaceNameIsAPlainStringAndABadOneFailsDecodingWithTheReason() throws {
        let encoded = try JSONEncoder().encode([try InterfaceName("eth0")])
        XCTAssertEqual(String(decoding: encoded, as: UTF8.self), #"["eth0"]"#)
        XCTAssertEqual(try JSONDecoder().decode([InterfaceName].self, from: encoded), [try InterfaceName("eth0")])
        XCTAssertThrowsError(try JSONDecoder().decode([InterfaceName].self, from: Data(#"["a/b"]"#.utf8))) { error in
            guard case DecodingError.dataCorrupted(let context)? = error as? DecodingError else {
                return XCTFail("expected dataCorrupted, got \(error)")
            }
            XCTAssertTrue(context.debugDescription.contains("contains '/'"), context.debugDescription)
        }
    }
}
