import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Privileged tests (netns, veth, AF_XDP, other users) skip when not root,
/// unless SLUICE_REQUIRE_PRIVILEGED=1 (set by .ci/run), where they fail.
public enum Privilege {
    public static var isRoot: Bool { geteuid() == 0 }

    public static var isRequired: Bool {
        ProcessInfo.processInfo.environment["SLUICE_REQUIRE_PRIVILEGED"] == "1"
    }

    /// Call first in every privileged test.
    public static func require(
        _ what: String = "root (network namespaces, veth, BPF)",
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        if isRoot { return }
        if isRequired {
            XCTFail("SLUICE_REQUIRE_PRIVILEGED=1 but this test needs \(what)", file: file, line: line)
            throw XCTSkip("failed: not privileged")
        }
        throw XCTSkip("needs \(what)")
    }
}
