import Foundation
import SluiceControl
import SluiceTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class ProtocolTests: XCTestCase {
    var harness: ServerHarness!

    override func setUpWithError() throws {
        harness = try ServerHarness()
    }

    override func tearDown() {
        harness?.stop()
    }

    func testGreetingCarriesVersionProtocolPidAndLevel() throws {
        let client = try harness.client()
        XCTAssertEqual(client.greeting["sluice"], .string(ControlProtocol.sluiceVersion))
        XCTAssertEqual(client.greeting["protocol"], .int(1))
        XCTAssertEqual(client.greeting["pid"], .int(Int64(getpid())))
        XCTAssertEqual(client.greeting["level"], .string(geteuid() == 0 ? "admin" : "read"))
    }

    func testReplyEchoesIdOfEitherType() throws {
        let client = try harness.client()
        try client.send(line: #"{"id":"abc","cmd":"test.echo","args":{"value":7}}"#)
        let reply = try JSONValue.parse(Array(try XCTUnwrap(client.readLine()).utf8))
        XCTAssertEqual(reply["id"], "abc")
        XCTAssertEqual(reply["result"]?["value"], 7)
        try client.send(line: #"{"id":18446744073709551615,"cmd":"test.echo","args":{"value":1}}"#)
        let big = try JSONValue.parse(Array(try XCTUnwrap(client.readLine()).utf8))
        XCTAssertEqual(big["id"], .uint(UInt64.max))
        XCTAssertTrue(big.isOK)
    }

    func testEveryErrorCodeIsReachable() async throws {
        var seen: Set<String> = []
        let client = try harness.client()
        try client.send(line: "{not json")
        seen.insert(try XCTUnwrap(JSONValue.parse(Array(XCTUnwrap(client.readLine()).utf8)).errorCode))
        seen.insert(try XCTUnwrap(client.call("no.such").errorCode))
        seen.insert(try XCTUnwrap(client.call("test.echo", arguments: ["value": "x"]).errorCode))
        for code in ["not_found", "unsupported", "busy", "internal"] {
            let reply = try client.call("test.fail", arguments: ["code": .string(code)])
            XCTAssertEqual(reply.errorCode, code)
            seen.insert(code)
        }
        // A peer without admin rights, through the same request path the socket uses.
        let reader = PeerIdentity(pid: 1, uid: 4242, gid: 4242, groups: [], adminGroup: nil)
        let denied = await harness.server.handle(
            line: Array(#"{"id":1,"cmd":"test.mutate"}"#.utf8), peer: reader, session: .detached())
        XCTAssertEqual(denied.errorCode, "permission_denied")
        seen.insert("permission_denied")
        XCTAssertEqual(seen, Set(ErrorCode.allCases.map(\.rawValue)))
    }

    func testAdminGroupMembershipThroughSupplementaryGroup() {
        XCTAssertEqual(PeerIdentity.level(uid: 1000, gid: 1000, groups: [27, 990], adminGroup: 990), .admin)
        XCTAssertEqual(PeerIdentity.level(uid: 1000, gid: 990, groups: [], adminGroup: 990), .admin)
        XCTAssertEqual(PeerIdentity.level(uid: 1000, gid: 1000, groups: [27], adminGroup: 990), .read)
        XCTAssertEqual(PeerIdentity.level(uid: 1000, gid: 1000, groups: [990], adminGroup: nil), .read)
        XCTAssertEqual(PeerIdentity.level(uid: 0, gid: 0, groups: [], adminGroup: nil), .admin)
    }

    func testHelpListsExactlyTheRegisteredCommands() throws {
        let reply = try harness.client().call("help")
        let listed = try XCTUnwrap(reply["result"]?["commands"]?.arrayValue).compactMap { $0["name"]?.stringValue }
        XCTAssertEqual(listed, harness.registry.commands.map(\.spec.name))
        XCTAssertTrue(listed.contains("stats.subscribe"))
        let echo = try XCTUnwrap(reply["result"]?["commands"]?.arrayValue?.first { $0["name"] == "test.echo" })
        XCTAssertEqual(echo["level"], "read")
        XCTAssertEqual(echo["arguments"]?.arrayValue?.first?["name"], "value")
        XCTAssertEqual(echo["arguments"]?.arrayValue?.first?["required"], true)
    }

    func testNumbersAreRangeChecked() throws {
        let client = try harness.client()
        for value: JSONValue in [256, -1, .uint(UInt64.max), 1.5] {
            let reply = try client.call("test.echo", arguments: ["value": value])
            XCTAssertEqual(reply.errorCode, "invalid_argument", "value \(value.serialized())")
        }
        XCTAssertEqual(try client.call("test.echo", arguments: ["value": 255])["result"]?["value"], 255)
        let unknown = try client.call("test.echo", arguments: ["value": 1, "vaule": 2])
        XCTAssertEqual(unknown.errorCode, "invalid_argument")
        XCTAssertTrue(unknown["error"]?["message"]?.stringValue?.contains("vaule") ?? false)
        XCTAssertEqual(try client.call("test.echo").errorCode, "invalid_argument")
    }

    func testThirtyTwoConcurrentClientsGetTheirOwnReplies() throws {
        let failures = LockedCounter()
        let group = DispatchGroup()
        let path = harness.socketPath
        for worker in 0..<32 {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                do {
                    let client = try ControlClient(socketPath: path, timeout: .seconds(30))
                    defer { client.close() }
                    for index in 0..<200 {
                        let id = "w\(worker)-\(index)"
                        try client.send(line: JSONValue.object([
                            "id": .string(id), "cmd": "test.echo",
                            "args": ["value": JSONValue(index % 256), "text": .string(id)],
                        ]).serialized())
                        guard let line = try client.readLine() else { failures.add(); return }
                        let reply = try JSONValue.parse(Array(line.utf8))
                        if reply["id"] != .string(id) || reply["result"]?["text"] != .string(id)
                            || reply["result"]?["value"] != JSONValue(index % 256) {
                            failures.add()
                        }
                    }
                } catch {
                    failures.add()
                }
            }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 120), .success)
        XCTAssertEqual(failures.value, 0)
        XCTAssertGreaterThanOrEqual(harness.server.statistics.commandsServed, 32 * 200)
    }

    func testStatsSubscriptionStreamsEventsTaggedWithTheRequestId() throws {
        harness.server.setStatisticsProvider { ["tick": 1] }
        let client = try harness.client()
        let reply = try client.call("stats.subscribe", arguments: ["interval_ms": 100])
        XCTAssertTrue(reply.isOK)
        let subscribeID = try XCTUnwrap(reply["id"])
        var events = 0
        while events < 3 {
            let line = try XCTUnwrap(client.readLine())
            let event = try JSONValue.parse(Array(line.utf8))
            XCTAssertEqual(event["event"], "stats")
            XCTAssertEqual(event["id"], subscribeID)
            XCTAssertEqual(event["data"]?["tick"], 1)
            events += 1
        }
        let stopped = try client.call("stats.unsubscribe")
        XCTAssertEqual(stopped["result"]?["unsubscribed"], true)
        XCTAssertEqual(try client.call("stats.subscribe", arguments: ["interval_ms": 5]).errorCode, "invalid_argument")
    }
}

final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
