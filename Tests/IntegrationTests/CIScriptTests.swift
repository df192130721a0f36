import Foundation
import SluiceTestSupport
import XCTest

/// `.ci/run` runs the README's two commands as written, the demo first,
/// bounded and without stdin, so neither can rot unseen. (The commands
/// themselves are run by DemoTests and by the suite; this checks CI runs them.)
final class CIScriptTests: XCTestCase {
    func testCIRunsTheReadmesTwoCommandsDemoFirstAndBounded() throws {
        let readme = try String(contentsOf: repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let block = try XCTUnwrap(
            readme.components(separatedBy: "## Two commands").dropFirst().first?
                .components(separatedBy: "```sh\n").dropFirst().first?
                .components(separatedBy: "```").first,
            "README.md has no sh block under 'Two commands'")
        // A line's command is what precedes its comment; continuation lines are comment only.
        let commands = block.split(separator: "\n")
            .map { $0.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0].trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        XCTAssertEqual(commands, ["tools/demo", "tools/test"], "the README's commands changed: update .ci/run and this test")

        let script = try String(contentsOf: repositoryRoot.appendingPathComponent(".ci/run"), encoding: .utf8)
        let lines = script.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.hasPrefix("#") && !$0.hasPrefix("echo ") }
        let demo = try XCTUnwrap(lines.firstIndex { $0.split(separator: " ").contains("tools/demo") }, ".ci/run does not run tools/demo")
        let test = try XCTUnwrap(lines.firstIndex { $0 == "tools/test" }, ".ci/run does not run exactly 'tools/test'")
        XCTAssertLessThan(demo, test, "the demo runs first")
        let demoLine = lines[demo]
        // Bounded: `timeout ... SECONDS tools/demo`, well inside CI's 90 minutes; no stdin.
        let words = demoLine.split(separator: " ").map(String.init)
        XCTAssertEqual(words.first, "timeout", demoLine)
        let seconds = try XCTUnwrap(words.prefix { $0 != "tools/demo" }.compactMap(Int.init).last, demoLine)
        XCTAssertLessThanOrEqual(seconds, 30 * 60, demoLine)
        XCTAssertTrue(demoLine.hasSuffix("tools/demo </dev/null"), "the demo must run as written, without stdin: \(demoLine)")
        XCTAssertTrue(script.contains("export SLUICE_REQUIRE_PRIVILEGED=1"), "privileged tests must fail, not skip, in CI")
    }
}
