import Foundation
import Logging
import SluiceTestSupport
import XCTest

@testable import SluiceDaemon

/// Helpers: parse a text that must be rejected and return its errors.
extension XCTestCase {
    func configErrors(
        _ text: String, file: StaticString = #filePath, line: UInt = #line
    ) -> [ConfigError] {
        do {
            let config = try SluiceConfig.parse(text: text, file: "test.toml")
            XCTFail("expected errors, parsed \(config)", file: file, line: line)
            return []
        } catch {
            return error.errors
        }
    }

    /// The single error for `text`; fails unless there is exactly one.
    func onlyConfigError(
        _ text: String, file: StaticString = #filePath, line: UInt = #line
    ) -> ConfigError? {
        let errors = configErrors(text, file: file, line: line)
        XCTAssertEqual(errors.count, 1, "\(errors)", file: file, line: line)
        return errors.first
    }
}

/// A group name that no test machine has.
private func absentGroupName() -> String { uniqueName("nogrp") }

final class ConfigParsingTests: XCTestCase {
    /// socket_group defaults to "sluice", which a test machine may lack, so
    /// texts that are about other keys set it explicitly.
    let ownGroup = "[control]\nsocket_group = \"\"\n"

    func testValidFileSetsEveryKey() throws {
        let text = """
            # a full configuration
            [daemon]
            state_dir = "/srv/sluice/state"
            log_level = "debug"

            [control]
            socket = "/tmp/sluice.sock"   # trailing comment
            socket_mode = "0600"
            socket_group = "root"
            admin_group = "root"
            max_clients = 4096
            idle_timeout_seconds = 1

            [nic]
            backend = "ioctl"

            [plugins]
            dir = "/opt/sluice/plugins"
            """
        let config = try SluiceConfig.parse(text: text, file: "full.toml")
        var expected = SluiceConfig()
        expected.daemon.stateDirectory = "/srv/sluice/state"
        expected.daemon.logLevel = .debug
        expected.control.socketPath = "/tmp/sluice.sock"
        expected.control.socketMode = 0o600
        expected.control.socketGroup = ConfigGroup(name: "root", gid: 0)
        expected.control.adminGroup = ConfigGroup(name: "root", gid: 0)
        expected.control.maxClients = 4096
        expected.control.idleTimeoutSeconds = 1
        expected.nic.backend = .ioctl
        expected.plugins.directory = "/opt/sluice/plugins"
        XCTAssertEqual(config, expected)
    }

    func testDottedAndInlineSpellingsAreEquivalent() throws {
        let text = """
            control.socket_group = ""
            control.max_clients = 7
            nic = { backend = "netlink" }
            """
        let config = try SluiceConfig.parse(text: text, file: "dotted.toml")
        XCTAssertEqual(config.control.maxClients, 7)
        XCTAssertEqual(config.nic.backend, .netlink)
        XCTAssertEqual(config.control.socketGroup, ConfigGroup(name: ""))
    }

    func testDefaultsDocumentTheSpecifiedValues() {
        let defaults = SluiceConfig.defaults
        XCTAssertEqual(defaults.daemon.stateDirectory, "/var/lib/sluice")
        XCTAssertEqual(defaults.daemon.logLevel, .info)
        XCTAssertEqual(defaults.control.socketPath, "/run/sluice/sluiced.sock")
        XCTAssertEqual(defaults.control.socketMode, 0o660)
        XCTAssertEqual(defaults.control.socketGroup, ConfigGroup(name: "sluice"))
        XCTAssertEqual(defaults.control.adminGroup, ConfigGroup(name: ""))
        XCTAssertEqual(defaults.control.maxClients, 64)
        XCTAssertEqual(defaults.control.idleTimeoutSeconds, 300)
        XCTAssertEqual(defaults.nic.backend, .auto)
        XCTAssertEqual(defaults.plugins.directory, "/usr/lib/sluice/plugins")
    }

    func testEmptyFileGivesDefaults() throws {
        // Everything but the socket group, which must exist when named.
        var expected = SluiceConfig.defaults
        expected.control.socketGroup = ConfigGroup(name: "")
        XCTAssertEqual(try SluiceConfig.parse(text: ownGroup, file: "min.toml"), expected)
        XCTAssertEqual(try SluiceConfig.parse(text: "[control]\nsocket_group = \"\"\n[nic]\n", file: "t"), expected)

        // The empty file itself: the default group "sluice" is looked up for
        // real; without it the one error names the key and says it is the default.
        switch GroupDatabase.lookUp("sluice") {
        case .found(let gid):
            expected.control.socketGroup = ConfigGroup(name: "sluice", gid: gid)
            XCTAssertEqual(try SluiceConfig.parse(text: "", file: "empty.toml"), expected)
        default:
            let error = onlyConfigError("")
            XCTAssertEqual(error?.line, nil)
            XCTAssertEqual(error?.key, "control.socket_group")
            XCTAssertEqual(
                error?.description,
                "test.toml: control.socket_group: group \"sluice\" does not exist"
                    + " (the default; set socket_group in [control] to change it)")
        }
    }

    func testSyntaxErrorNamesLineAndColumn() {
        let error = onlyConfigError("""
            [control]
            max_clients = 5
            idle_timeout_seconds = = 3
            """)
        XCTAssertEqual(error?.line, 3)
        XCTAssertEqual(error?.column, 24)
        XCTAssertEqual(error?.key, nil)
        XCTAssertTrue(error?.description.hasPrefix("test.toml:3:24: syntax error: ") ?? false, "\(String(describing: error))")
    }

    /// toml++ 3.4 asserts (a crash in debug builds, undefined behaviour in
    /// release) on a header like `[{a]`; found by fuzzing. We catch it first.
    func testHeaderThatCannotStartAKeyIsASyntaxErrorNotACrash() {
        for header in ["[{daemon]", "[!daemon]", "[ =]", "[[ ,x]]", "[\n"] {
            let error = onlyConfigError("# x\n\n  \(header)\nstate_dir = \"/x\"\n")
            XCTAssertEqual(error?.line, 3, header)
            XCTAssertEqual(error?.message, "syntax error: a table header must start with a key name", header)
        }
        XCTAssertEqual(onlyConfigError("[control]\nsocket_group = \"\"\n [ {x]")?.column, 4)
        // A syntax error before such a header is the one reported.
        let earlier = onlyConfigError("a = = 1\n[{x]\n")
        XCTAssertEqual(earlier?.line, 1)
        XCTAssertNotEqual(earlier?.message, "syntax error: a table header must start with a key name")
    }

    /// Also found by fuzzing: toml++ 3.4 asserts on an array element that
    /// starts with `}` or a Unicode line separator.
    func testArrayElementThatCannotStartAValueIsASyntaxErrorNotACrash() {
        for (text, line, column) in [
            ("a = [}", 1, 6), ("a = [1, }]", 1, 9), ("a = [\n  1,\n  }\n]", 3, 3),
            ("\"é\" = 1\nb = [ \u{2028}]", 2, 7), ("a = [[\u{85}]]", 1, 7), ("a = [{b = [}]}]", 1, 12),
            // Deeper than the index scanner went at first (found by fuzzing).
            ("a = " + String(repeating: "[", count: 200) + "}", 1, 205),
            // A `}` after an element is toml++'s own "expected comma" error,
            // and the defused text must not trip either (found by fuzzing).
            ("a = [{}, }", 1, 10),
        ] {
            let error = onlyConfigError(text)
            XCTAssertEqual(error?.message, "syntax error: expected a value or ']'", text)
            XCTAssertEqual(error?.line, line, text)
            XCTAssertEqual(error?.column, column, text)
        }
    }

    /// Also found by fuzzing: toml++ 3.4 asserts on a date, a space and a
    /// single digit (a time cut short), and on a date, a T and no digit:
    /// at the value, or where its time should start.
    func testDateWithTruncatedTimeIsASyntaxErrorNotACrash() {
        for (text, column) in [("d = 1979-05-27 0\n", 5), ("d = [1979-05-27 7]", 6), ("d = 30-c----up 1 ", 5), ("d = 1_979-05-27 1,", 5),
            ("d = 30_\u{FEBF}c----up 1 \" u", 5), ("d = 1979-05-27true32:00Z{}", 16), ("d = 1979-05-27Tx1:00:00", 16),
            ("d = 1979-05-27t 07:00:00", 5)] {
            let error = onlyConfigError(text)
            XCTAssertEqual(error?.line, 1, text)
            XCTAssertEqual(error?.column, column, text)
            XCTAssertEqual(error?.message.hasPrefix("syntax error: "), true, text)
        }
        XCTAssertEqual(
            onlyConfigError("d = 1979-05-27 0\n")?.message, "syntax error: a date-time needs a time of the form HH:MM:SS")
        // At the end of the text toml++ does not trip, and reports its own error.
        XCTAssertEqual(onlyConfigError("d = 1979-05-27 0")?.message.hasPrefix("syntax error:"), true)
        // Real date-times, with a space or a T, still parse (and are then an unknown key).
        for text in ["d = 1979-05-27 07:32:00Z", "d = 1979-05-27T07:32:00", "d = 1979-05-27"] {
            XCTAssertEqual(onlyConfigError(text + "\n" + ownGroup)?.message.hasPrefix("unknown key"), true, text)
        }
    }

    func testDuplicateKeyIsASyntaxError() {
        let error = onlyConfigError("[nic]\nbackend = \"auto\"\n\nbackend = \"ioctl\"\n")
        XCTAssertEqual(error?.line, 4)
        XCTAssertTrue(error?.message.hasPrefix("syntax error:") ?? false)
    }

    func testNULCharacterIsASyntaxError() {
        let error = onlyConfigError("[nic]\nbackend = \"a\u{0}b\"\n")
        XCTAssertEqual(error?.description, "test.toml:2:13: syntax error: NUL character")
    }

    func testClosingBraceAfterAnArrayElementIsTheParsersOwnError() {
        let error = onlyConfigError("nds =[[[[[[[{}}}}}}}}}}}\u{FEFF}\u{FFFD}")
        XCTAssertEqual(error?.line, 1)
        XCTAssertEqual(error?.column, 15)
        XCTAssertNotEqual(error?.message, "syntax error: expected a value or ']'")
    }

    func testEscapedNULInAStringIsRefused() {
        // Config strings become C strings (paths, group names): a NUL would cut "/run/a" short.
        let error = onlyConfigError(ownGroup + "socket = \"/run/a\\u0000b\"\n")
        XCTAssertEqual(error?.description, "test.toml:3:17: syntax error: strings may not contain NUL (\\u0000)")
        XCTAssertEqual(onlyConfigError("a = \"\"\"x\n\\U00000000\"\"\"")?.line, 2)
        // An escaped backslash before u0000 is just text.
        XCTAssertEqual(
            try SluiceConfig.parse(text: ownGroup + "socket = \"/run/a\\\\u0000\"\n", file: "t").control.socketPath,
            "/run/a\\u0000")
    }

    func testUnknownKeySuggestsTheClosestKnownKey() {
        let error = onlyConfigError(ownGroup + "\n\nmax_client = 3\n")
        XCTAssertEqual(error?.description, "test.toml:5: control.max_client: unknown key; did you mean 'max_clients'?")
    }

    func testUnknownKeyInTheWrongSectionNamesItsHome() {
        let error = onlyConfigError(ownGroup + "[daemon]\nbackend = \"auto\"\n")
        XCTAssertEqual(error?.description, "test.toml:4: daemon.backend: unknown key; 'backend' belongs in [nic]")
    }

    func testUnknownTopLevelKey() {
        let error = onlyConfigError("log_level = \"info\"\n" + ownGroup)
        XCTAssertEqual(error?.description, "test.toml:1: log_level: unknown key; did you mean 'log_level' in [daemon]?")
    }

    func testUnknownTable() {
        let error = onlyConfigError(ownGroup + "\n[statsd]\nport = 9100\n")
        XCTAssertEqual(error?.line, 4)
        XCTAssertEqual(error?.key, "statsd")
        XCTAssertEqual(
            error?.message,
            "unknown table; the tables are [daemon], [control], [nic], [plugins], [pipeline], [metrics], [[interface]]")

        let typo = onlyConfigError(ownGroup + "[plugin]\ndir = \"/x\"\n")
        XCTAssertEqual(typo?.description, "test.toml:3: plugin: unknown table; did you mean [plugins]?")
    }

    func testUnknownTableInsideASection() {
        let error = onlyConfigError(ownGroup + "\n[control.limits]\nmax = 1\n")
        XCTAssertEqual(error?.line, 4)
        XCTAssertEqual(error?.key, "control.limits")
        XCTAssertTrue(error?.message.hasPrefix("unknown table") ?? false)
    }

    func testArrayOfTablesIsAnUnknownTableAtItsFirstHeader() {
        let error = onlyConfigError(ownGroup + "\n[[interfaces]]\nname = \"a\"\n[[interfaces]]\nname = \"b\"\n")
        XCTAssertEqual(error?.line, 4)
        XCTAssertEqual(error?.key, "interfaces")
        XCTAssertEqual(error?.message, "unknown table; did you mean [[interface]]?")
    }

    func testSectionThatIsNotATable() {
        let error = onlyConfigError(ownGroup + "nic = \"auto\"\n")
        // `nic = ...` after [control] is control.nic: unknown, not a section.
        XCTAssertEqual(
            error?.description,
            "test.toml:3: control.nic: unknown key; [control] has socket, socket_mode, socket_group, admin_group,"
                + " max_clients, idle_timeout_seconds")
        let topLevel = onlyConfigError("nic = \"auto\"\n" + ownGroup)
        XCTAssertEqual(topLevel?.description, "test.toml:1: nic: expected a table, got string")
    }

    func testWrongType() {
        let error = onlyConfigError(ownGroup + "max_clients = \"64\"\n")
        XCTAssertEqual(error?.description, "test.toml:3: control.max_clients: expected an integer, got string")
        let float = onlyConfigError(ownGroup + "idle_timeout_seconds = 1.5\n")
        XCTAssertEqual(
            float?.description, "test.toml:3: control.idle_timeout_seconds: expected an integer, got floating-point number")
        let bool = onlyConfigError("[daemon]\nlog_level = true\n" + ownGroup)
        XCTAssertEqual(bool?.description, "test.toml:2: daemon.log_level: expected a string, got boolean")
        let mode = onlyConfigError(ownGroup + "socket_mode = 660\n")
        XCTAssertEqual(
            mode?.description,
            "test.toml:3: control.socket_mode: expected a string, got integer (write the mode quoted, like \"0660\")")
    }

    func testOutOfRange() {
        let zero = onlyConfigError(ownGroup + "max_clients = 0\n")
        XCTAssertEqual(zero?.description, "test.toml:3: control.max_clients: 0 is out of range 1...4096")
        let huge = onlyConfigError(ownGroup + "max_clients = 9223372036854775807\n")
        XCTAssertEqual(huge?.description, "test.toml:3: control.max_clients: 9223372036854775807 is out of range 1...4096")
        let negative = onlyConfigError(ownGroup + "idle_timeout_seconds = -1\n")
        XCTAssertEqual(negative?.description, "test.toml:3: control.idle_timeout_seconds: -1 is out of range 1...86400")
        XCTAssertEqual(try SluiceConfig.parse(text: ownGroup + "idle_timeout_seconds = 86400", file: "t")
            .control.idleTimeoutSeconds, 86400)
    }

    func testBadEnumValue() {
        let error = onlyConfigError("[daemon]\nlog_level = \"verbose\"\n" + ownGroup)
        XCTAssertEqual(
            error?.description,
            "test.toml:2: daemon.log_level: \"verbose\" is not one of trace, debug, info, notice, warning, error, critical")
        let backend = onlyConfigError(ownGroup + "[nic]\nbackend = \"Netlink\"\n")
        XCTAssertEqual(backend?.description, "test.toml:4: nic.backend: \"Netlink\" is not one of auto, netlink, ioctl")
    }

    func testEveryLogLevelIsAccepted() throws {
        for level in Logger.Level.allCases {
            let config = try SluiceConfig.parse(text: "[daemon]\nlog_level = \"\(level)\"\n" + ownGroup, file: "t")
            XCTAssertEqual(config.daemon.logLevel, level)
        }
    }

    func testBadOctalModes() throws {
        for bad in ["0999", "08", "01777", "", "rw-rw----", "0o660", "+660", "00660"] {
            let error = onlyConfigError(ownGroup + "socket_mode = \"\(bad)\"\n")
            XCTAssertEqual(error?.description, "test.toml:3: control.socket_mode: \"\(bad)\" is not an octal mode in 0000...0777")
        }
        for (good, mode) in [("0600", 0o600), ("777", 0o777), ("0", 0), ("0000", 0)] as [(String, UInt32)] {
            let config = try SluiceConfig.parse(text: ownGroup + "socket_mode = \"\(good)\"\n", file: "t")
            XCTAssertEqual(config.control.socketMode, mode, good)
        }
    }

    func testRelativePath() {
        let error = onlyConfigError("[daemon]\nstate_dir = \"var/lib/sluice\"\n" + ownGroup)
        XCTAssertEqual(error?.description, "test.toml:2: daemon.state_dir: \"var/lib/sluice\" is not an absolute path")
        let empty = onlyConfigError(ownGroup + "[plugins]\ndir = \"\"\n")
        XCTAssertEqual(empty?.description, "test.toml:4: plugins.dir: \"\" is not an absolute path")
    }

    /// Directories the daemon writes into are made at start when missing;
    /// one that can never be made is refused with the config, naming the
    /// key, the path and the fix, instead of a daemon or pipeline that fails later.
    func testOutputDirectoriesThatCannotBeMadeAreRefusedNamingKeyPathAndFix() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("notadir")).path
        try "not a directory".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let fix = "create it or choose a path on a writable file system"
        let errors = configErrors("""
            [daemon]
            state_dir = "\(file)/state"
            [control]
            socket_group = ""
            socket = "\(file)/run/sluiced.sock"
            [[pipeline.modules]]
            kind = "pcap"
            path = "\(file)/captures/capture.pcap"
            """)
        XCTAssertEqual(errors.map(\.description), [
            "test.toml:2: daemon.state_dir: '\(file)/state' cannot be made: '\(file)' is not a directory; \(fix)",
            "test.toml:5: control.socket: its directory '\(file)/run' cannot be made: '\(file)' is not a directory; \(fix)",
            "test.toml:8: pipeline.modules[0].path: the capture directory '\(file)/captures' cannot be made:"
                + " '\(file)' is not a directory; \(fix)",
        ])
        let existing = onlyConfigError(ownGroup + "[daemon]\nstate_dir = \"\(file)\"\n")
        XCTAssertEqual(existing?.description, "test.toml:4: daemon.state_dir: '\(file)' exists and is not a directory; \(fix)")
        // Directories that do not exist yet but can be made are fine: the daemon makes them.
        let fresh = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("fresh")).path
        let config = try SluiceConfig.parse(text: ownGroup + "socket = \"\(fresh)/run/s.sock\"\n[daemon]\nstate_dir = \"\(fresh)/state\"\n", file: "t")
        XCTAssertEqual(config.daemon.stateDirectory, fresh + "/state")
        XCTAssertFalse(FileManager.default.fileExists(atPath: fresh), "checking the config made a directory")
    }

    func testSocketPathTooLong() throws {
        let longest = "/" + String(repeating: "s", count: 106)
        XCTAssertEqual(
            try SluiceConfig.parse(text: ownGroup + "socket = \"\(longest)\"\n", file: "t").control.socketPath, longest)
        let error = onlyConfigError(ownGroup + "socket = \"\(longest)x\"\n")
        XCTAssertEqual(
            error?.description,
            "test.toml:3: control.socket: the path is 108 bytes long; a UNIX socket path (sun_path) holds at most 107")
        // Bytes, not characters: 54 two-byte characters are 108 bytes.
        let wide = "/" + String(repeating: "é", count: 54)
        XCTAssertEqual(onlyConfigError(ownGroup + "socket = \"\(wide)\"\n")?.line, 3)
    }

    func testNonExistentGroup() {
        let name = absentGroupName()
        let error = onlyConfigError("\n[control]\nsocket_group = \"\(name)\"\n")
        XCTAssertEqual(error?.description, "test.toml:3: control.socket_group: group \"\(name)\" does not exist")
        let admin = onlyConfigError(ownGroup + "admin_group = \"\(name)\"\n")
        XCTAssertEqual(admin?.description, "test.toml:3: control.admin_group: group \"\(name)\" does not exist")
    }

    func testGroupsResolveToTheirGid() throws {
        let config = try SluiceConfig.parse(text: "[control]\nsocket_group = \"root\"\nadmin_group = \"\"", file: "t")
        XCTAssertEqual(config.control.socketGroup, ConfigGroup(name: "root", gid: 0))
        XCTAssertEqual(config.control.adminGroup, ConfigGroup(name: "", gid: nil))
    }

    func testGroupCreatedOnTheSystemIsResolved() throws {
        try Privilege.require("root (groupadd)")
        let name = uniqueName("sltg")
        try SluiceTestSupport.run(["groupadd", name], check: true)
        defer { _ = try? SluiceTestSupport.run(["groupdel", name]) }
        let expected = try XCTUnwrap(
            UInt32(try SluiceTestSupport.run(["getent", "group", name], check: true).stdout.split(separator: ":")[2]))
        let config = try SluiceConfig.parse(text: ownGroup + "admin_group = \"\(name)\"\n", file: "t")
        XCTAssertEqual(config.control.adminGroup, ConfigGroup(name: name, gid: expected))
    }

    func testAbsurdGroupNamesAreRejectedNotLookedUp() {
        let long = String(repeating: "g", count: 300)
        let error = onlyConfigError(ownGroup + "admin_group = \"\(long)\"\n")
        XCTAssertEqual(error?.line, 3)
        XCTAssertTrue(error?.message.contains("longer than 256 bytes") ?? false, "\(String(describing: error))")
    }

    func testAllErrorsAreReportedTogetherInLineOrder() {
        let name = absentGroupName()
        let text = """
            [daemon]
            state_dir = "relative"
            log_level = "loud"

            [control]
            socket = "/run/x.sock"
            max_clients = 0
            socket_group = "\(name)"
            colour = "blue"
            socket_mode = 420

            [nic]
            backend = "magic"

            [statistics]
            """
        let errors = configErrors(text)
        XCTAssertEqual(errors.map(\.line), [2, 3, 7, 8, 9, 10, 13, 15])
        XCTAssertEqual(errors.map(\.key), [
            "daemon.state_dir", "daemon.log_level", "control.max_clients", "control.socket_group",
            "control.colour", "control.socket_mode", "nic.backend", "statistics",
        ])
        do {
            _ = try SluiceConfig.parse(text: text, file: "/etc/sluice/sluice.toml")
        } catch {
            let lines = error.description.split(separator: "\n")
            XCTAssertEqual(lines.count, 8)
            XCTAssertEqual(lines[2], "/etc/sluice/sluice.toml:7: control.max_clients: 0 is out of range 1...4096")
            XCTAssertTrue(lines.allSatisfy { $0.hasPrefix("/etc/sluice/sluice.toml:") })
        }
    }

    func testManyErrorsAreCountedButDescribedBriefly() {
        let text = ownGroup + (1...500).map { "unknown_\($0) = 1" }.joined(separator: "\n")
        do {
            _ = try SluiceConfig.parse(text: text, file: "t")
            XCTFail("accepted 500 unknown keys")
        } catch {
            XCTAssertEqual(error.errors.count, 500)
            let lines = error.description.split(separator: "\n")
            XCTAssertEqual(lines.count, ConfigErrors.describedLimit + 1)
            XCTAssertEqual(lines.last, "(and 450 more errors)")
        }
    }

    /// Pathological but well-formed shapes near the 1 MiB file limit must
    /// finish, and not overflow toml++'s recursion (found by testing).
    func testLargePathologicalDocumentsFinish() {
        let parts = { (count: Int) in Array(repeating: "a", count: count).joined(separator: ".") }
        for text in [
            "x." + parts(200_000) + " = 1\n", "[control]\n" + parts(64) + " = 1", "[" + parts(65) + "]",
            "[[a]]\n[" + parts(64) + "]", "a = {" + Array(repeating: "b = {", count: 65).joined() + String(repeating: "}", count: 66),
            "\n a." + parts(32) + " = {" + parts(32) + " = 1}",
        ] {
            let error = onlyConfigError(text)
            XCTAssertEqual(error?.message, "syntax error: keys may nest at most 64 deep", String(text.prefix(20)))
        }
        XCTAssertEqual(onlyConfigError("\n a." + parts(32) + " = {" + parts(32) + " = 1}")?.column, 71)
        XCTAssertEqual(onlyConfigError(ownGroup + parts(62) + " = 1")?.message.hasPrefix("unknown"), true)
    }

    func testManyKeysFinish() {
        let keys = (0..<20_000).map { "k\($0) = \"\(String(repeating: "v", count: 10))\"" }.joined(separator: "\n")
        XCTAssertEqual(configErrors("[control]\nsocket_group = \"\"\n" + keys).count, 20_000)
    }

    func testLinesStayRightAfterMultiLineValues() {
        let text = """
            [control]
            socket_group = ""
            [daemon]
            'log_level' = \"\"\"info\"\"\"
            [nic]
            "backend" = 'auto'
            [unused]
            notes = \"\"\"
            line one
            [control]
            max_clients = 0
            \"\"\"
            list = [
              "a", # comment with ] and "
              '''b
            ]''',
              { x = 1, y = [1, 2] },
            ]
            [[unused.more]]
            a = 1
            [[unused.more]]
            b = 2
            [plugins] # ok
            """ + "\ndir = 'etc'\n"
        let errors = configErrors(text)
        XCTAssertEqual(errors.map(\.description), [
            "test.toml:7: unused: unknown table; the tables are [daemon], [control], [nic], [plugins], [pipeline],"
                + " [metrics], [[interface]]",
            "test.toml:24: plugins.dir: \"etc\" is not an absolute path",
        ])
    }

    func testGarbageNeverTraps() throws {
        // Mutations of a valid file: parse must throw or succeed, never trap.
        let lab = repositoryRoot.appendingPathComponent("etc/sluice-lab.toml")
        let base = Array(try String(contentsOf: lab, encoding: .utf8).utf8)
        var generator = SplitMix64(seed: 0x51_1C_E0)
        let alphabet = Array("[]{}\"'=.,#\n\\ \t0x_-aé".utf8)
        for _ in 0..<300 {
            var bytes = base
            for _ in 0..<Int(generator.next() % 6 + 1) {
                let at = Int(generator.next() % UInt64(bytes.count))
                let byte = alphabet[Int(generator.next() % UInt64(alphabet.count))]
                if generator.next() % 2 == 0 { bytes[at] = byte } else { bytes.insert(byte, at: at) }
            }
            _ = try? SluiceConfig.parse(text: String(decoding: bytes, as: UTF8.self), file: "fuzz")
        }
        // Deep nesting must not exhaust the stack.
        XCTAssertEqual(configErrors("a = " + String(repeating: "[", count: 100_000)).first?.line, 1)
        XCTAssertEqual(configErrors("a = " + String(repeating: "{b=", count: 100_000)).first?.line, 1)
    }
}

/// A small deterministic generator, so a failing mutation can be replayed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
