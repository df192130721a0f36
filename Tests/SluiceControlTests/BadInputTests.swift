import Foundation
import SluiceControl
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Whatever a client sends, the daemon answers with an error (or closes an
/// oversize connection) and keeps serving everyone else.
final class BadInputTests: XCTestCase {
    var harness: ServerHarness!

    override func setUpWithError() throws {
        harness = try ServerHarness(maxClients: 8)
    }

    override func tearDown() {
        harness?.stop()
    }

    private func assertServerHealthy(file: StaticString = #filePath, line: UInt = #line) throws {
        let reply = try harness.client().call("help")
        XCTAssertTrue(reply.isOK, "fresh client after bad input: \(reply.serialized())", file: file, line: line)
    }

    private func reply(to line: String) throws -> JSONValue {
        let client = try harness.client()
        try client.send(line: line)
        return try JSONValue.parse(Array(try XCTUnwrap(client.readLine()).utf8))
    }

    func testMalformedRequestsGetBadRequest() throws {
        let cases: [(String, String)] = [
            ("{\"id\":1,", "bad_request"),
            ("[1,2,3]", "bad_request"),
            ("\"just a string\"", "bad_request"),
            ("{\"id\":1}", "bad_request"),
            ("{\"id\":1,\"cmd\":42}", "bad_request"),
            ("{\"id\":{\"x\":1},\"cmd\":\"help\"}", "bad_request"),
            ("{\"id\":1,\"cmd\":\"help\",\"args\":[1]}", "bad_request"),
            ("{\"id\":1,\"cmd\":\"help\",\"extra\":true}", "bad_request"),
            ("{\"id\":1,\"cmd\":\"test.echo\",\"args\":{\"value\":\"7\"}}", "invalid_argument"),
            ("{\"id\":1,\"cmd\":\"test.echo\",\"args\":{\"value\":7,\"text\":5}}", "invalid_argument"),
            ("{\"id\":1,\"cmd\":\"nope.nope\"}", "unknown_command"),
            (String(repeating: "[", count: 60_000), "bad_request"),
        ]
        for (line, code) in cases {
            let answer = try reply(to: line)
            XCTAssertEqual(answer.errorCode, code, "for \(line.prefix(60))")
            XCTAssertEqual(answer["ok"], false)
        }
        // The id survives when it was readable.
        XCTAssertEqual(try reply(to: "{\"id\":\"keep\"}")["id"], "keep")
        try assertServerHealthy()
    }

    func testOneMebibyteLineClosesTheConnectionWithAFinalError() throws {
        let client = try harness.client()
        try? client.send(bytes: Array(repeating: UInt8(ascii: "a"), count: 1 << 20))
        let line = try XCTUnwrap(client.readLine())
        let answer = try JSONValue.parse(Array(line.utf8))
        XCTAssertEqual(answer.errorCode, "bad_request")
        XCTAssertTrue(answer["error"]?["message"]?.stringValue?.contains("65536") ?? false)
        XCTAssertNil(try client.readLine(), "connection must be closed after an oversize line")
        try assertServerHealthy()
    }

    func testExactlyMaximumLineIsStillParsed() throws {
        let padding = String(repeating: " ", count: ControlProtocol.maxLineBytes - 30)
        let line = "{\"id\":1,\"cmd\":\"help\"}" + padding
        XCTAssertLessThanOrEqual(line.utf8.count, ControlProtocol.maxLineBytes)
        XCTAssertTrue(try reply(to: line).isOK)
    }

    func testRandomBytesAreAnsweredNotFatal() throws {
        var generator = SystemRandomNumberGenerator()
        let client = try harness.client()
        var bytes = (0..<(64 * 1024)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        bytes.append(0x0A)
        try? client.send(bytes: bytes)
        // Every complete line gets a reply (or the connection is closed for
        // an oversize one); either way the server stays up.
        while let line = try? client.readLine() {
            let answer = try JSONValue.parse(Array(line.utf8))
            XCTAssertEqual(answer["ok"], false)
        }
        try assertServerHealthy()
    }

    func testHalfLineThenCloseIsHarmless() throws {
        let client = try harness.client()
        try client.send(bytes: Array("{\"id\":1,\"cmd\":\"sta".utf8))
        client.close()
        try assertServerHealthy()
    }

    func testClientThatNeverReadsDoesNotDisturbOthers() throws {
        // Written from the thread below while this one checks other
        // clients; only close() is shared, after the thread stops mattering.
        nonisolated(unsafe) let stuck = try harness.client()
        // Far more replies than the socket buffers hold; the server blocks on
        // this connection only.
        let request = Array((#"{"id":1,"cmd":"help"}"# + "\n").utf8)
        let flood = Array((0..<4000).map { _ in request }.joined())
        let writer = Thread { try? stuck.send(bytes: flood) }
        writer.start()
        for _ in 0..<5 { try assertServerHealthy() }
        stuck.close()
        try assertServerHealthy()
    }

    func testClientsBeyondTheLimitGetBusy() throws {
        var held: [ControlClient] = []
        for _ in 0..<8 { held.append(try harness.client()) }
        // The ninth is refused with a busy error line, then closed.
        let extra = try harness.client()
        XCTAssertEqual(extra.greeting.errorCode, "busy")
        XCTAssertNil(try extra.readLine())
        held.removeLast().close()
        let deadline = ContinuousClock.now + .seconds(10)
        var admitted = false
        while ContinuousClock.now < deadline, !admitted {
            if let client = try? harness.client(), client.greeting["protocol"] == 1 { admitted = true; break }
            usleep(20_000)
        }
        XCTAssertTrue(admitted, "a slot freed by a departing client is reusable")
        held.forEach { $0.close() }
    }
}

final class IdleTimeoutTests: XCTestCase {
    func testIdleClientIsDisconnected() throws {
        let harness = try ServerHarness(idleTimeout: .milliseconds(300))
        defer { harness.stop() }
        let client = try harness.client()
        let start = ContinuousClock.now
        XCTAssertNil(try client.readLine(), "idle client must be closed by the server")
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(10))
        XCTAssertTrue(try harness.client().call("help").isOK)
    }
}
