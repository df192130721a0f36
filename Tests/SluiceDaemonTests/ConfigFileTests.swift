import Foundation
import SluiceTestSupport
import XCTest

@testable import SluiceDaemon

final class TOMLPositionTests: XCTestCase {
    /// Asserts the line of each rendered path (nil: not in the document).
    func assertLines(
        _ text: String, _ expected: KeyValuePairs<String, Int?>,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        var rendered: [String: Int] = [:]
        func visit(_ value: TOMLValue, _ path: [TOMLPathComponent]) {
            if !path.isEmpty { rendered[TOMLPathComponent.render(path)] = value.line }
            for key in value.table?.keys ?? [] { visit(value.table![key]!, path + [.key(key)]) }
            for (index, element) in (value.array ?? []).enumerated() { visit(element, path + [.element(index)]) }
        }
        visit(try TOMLValue.parse(text), [])
        for (path, number) in expected {
            XCTAssertEqual(rendered[path], number, path, file: file, line: line)
        }
    }

    func testTablesDottedAndQuotedKeys() throws {
        let text = """
            top = 1
            [a]
            b.c = 2
            "quoted key" = 3
            'lit.eral' = 4
            "esc\\u0061ped" = 5
              [ a . "sub table" ]
            x = { y = 1, z.w = { v = 2 } }
            """
        try assertLines(text, [
            "top": 1,
            "a": 2,
            "a.b": 3,
            "a.b.c": 3,
            "a.\"quoted key\"": 4,
            "a.\"lit.eral\"": 5,
            "a.escaped": 6,
            "a.\"sub table\"": 7,
            "a.\"sub table\".x.z.w.v": 8,
        ])
        // A key nobody wrote falls back to its closest written ancestor.
        let document = try TOMLValue.parse(text)
        XCTAssertEqual(document.line(of: ["a", "b", "nowhere"]), 3)
        XCTAssertEqual(document.line(of: ["nowhere"]), nil)
    }

    func testArraysOfTablesAreNumberedPerArray() throws {
        try assertLines("""
            [[fruit]]
            name = "apple"
            [fruit.physical]
            color = "red"
            [[fruit.variety]]
            name = "red delicious"
            [[fruit]]
            name = "banana"
            [[fruit.variety]]
            name = "plantain"
            """, [
            "fruit": 1,
            "fruit[0].name": 2,
            "fruit[0].physical.color": 4,
            "fruit[0].variety[0].name": 6,
            "fruit[1]": 7,
            "fruit[1].name": 8,
            "fruit[1].variety[0].name": 10,
        ])
    }

    func testMultiLineStringsArraysAndCRLF() throws {
        let text = [
            "a = \"\"\"", "x \\\"\"\" still inside", "[not_a_table]", "\"\"\"\"",  // ends with one quote of content
            "b = '''", "c = 1", "''''' ",  // two quotes of content
            "d = [", "  1, # ] not the end", "  [2, 3],", "  { e = 4 },", "]",
            "f = 'x' # 'comment'",
            "g = \"\\\\\"",
        ].joined(separator: "\r\n")
        try assertLines(text, [
            "a": 1,
            "not_a_table": nil,
            "b": 5,
            "c": nil,
            "d": 8,
            "d[2].e": 11,
            "f": 13,
            "g": 14,
        ])
    }
}

/// Loading from disk, and the two files shipped in etc/.
final class ConfigFileTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("sluicecfg"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let url = directory.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    func loadErrors(_ path: String, file: StaticString = #filePath, line: UInt = #line) -> [ConfigError] {
        do {
            let config = try SluiceConfig.load(path: path)
            XCTFail("expected errors, loaded \(config)", file: file, line: line)
            return []
        } catch {
            return error.errors
        }
    }

    func testShippedDefaultFileSetsEveryKeyToItsDefault() throws {
        let path = repositoryRoot.appendingPathComponent("etc/sluice.toml").path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let document = try TOMLValue.parse(text)
        for section in SluiceConfig.schema {
            for key in section.keys {
                XCTAssertNotNil(document.table?[section.name]?.table?[key.name], "etc/sluice.toml lacks \(section.name).\(key.name)")
                XCTAssertTrue(text.contains("\(key.name) = \(key.defaultText)\n"),
                              "etc/sluice.toml: \(key.name) is not at its default \(key.defaultText)")
            }
        }
        // It validates wherever the default group "sluice" exists; elsewhere
        // only that group is missing.
        do {
            var config = try SluiceConfig.load(path: path)
            config.control.socketGroup.gid = nil
            XCTAssertEqual(config, SluiceConfig.defaults)
        } catch {
            XCTAssertEqual(error.errors.map(\.key), ["control.socket_group"], "\(error)")
            XCTAssertEqual(error.errors.first?.line, 31)
        }
    }

    func testShippedLabFileValidatesWithoutAnyGroup() throws {
        let path = repositoryRoot.appendingPathComponent("etc/sluice-lab.toml").path
        let config = try SluiceConfig.load(path: path)
        XCTAssertEqual(config.control.socketPath, "/run/sluice-lab/sluiced.sock")
        XCTAssertEqual(config.control.socketGroup, ConfigGroup(name: ""))
        XCTAssertEqual(config.control.adminGroup, ConfigGroup(name: ""))
        XCTAssertEqual(config.daemon.stateDirectory, "/var/lib/sluice-lab")
        XCTAssertEqual(config.plugins.directory, SluiceConfig.defaults.plugins.directory)
    }

    func testLoadReportsTheFilesPath() throws {
        let path = try write("bad.toml", Array("[control]\nsocket_group = \"\"\nmax_clients = 0\n".utf8))
        XCTAssertEqual(loadErrors(path).map(\.description), ["\(path):3: control.max_clients: 0 is out of range 1...4096"])
    }

    func testMissingFile() {
        let path = directory.appendingPathComponent("absent.toml").path
        XCTAssertEqual(
            loadErrors(path).map(\.description),
            ["\(path): cannot open: No such file or directory (errno 2)"])
    }

    func testDirectoryIsNotAConfigFile() {
        XCTAssertEqual(loadErrors(directory.path).map(\.description), ["\(directory.path): not a regular file"])
    }

    func testFIFOIsRejectedWithoutWaitingForAWriter() throws {
        let path = directory.appendingPathComponent("fifo.toml").path
        XCTAssertEqual(mkfifo(path, 0o600), 0)
        XCTAssertEqual(loadErrors(path).map(\.description), ["\(path): not a regular file"])
    }

    func testOversizedFile() throws {
        let path = try write("huge.toml", [UInt8](repeating: UInt8(ascii: "#"), count: SluiceConfig.maximumFileBytes + 1))
        XCTAssertEqual(
            loadErrors(path).map(\.description),
            ["\(path): larger than 1048576 bytes; is this the right file?"])
    }

    func testInvalidUTF8NamesTheLine() throws {
        let path = try write("latin1.toml", Array("[daemon]\n# caf".utf8) + [0xE9] + Array("\n".utf8))
        XCTAssertEqual(loadErrors(path).map(\.description), ["\(path):2: syntax error: the line is not valid UTF-8"])
    }
}
