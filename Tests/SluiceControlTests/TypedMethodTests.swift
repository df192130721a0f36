import SluiceControl
import XCTest

/// A method declared once (SluiceProtocol's ControlMethod): the server checks
/// and decodes its request, encodes its reply, and `help` lists it.
final class TypedMethodTests: XCTestCase {
    enum Resize: ControlMethod {
        static let name = "test.resize"
        static let level = AccessLevel.read
        static let summary = "typed request and reply"
        static let arguments = [
            ArgumentSpec(Request.CodingKeys.iface, .string, required: true, "interface"),
            ArgumentSpec(Request.CodingKeys.ringSize, UInt16.self, in: 64...4096, required: true, "ring size"),
            ArgumentSpec(Request.CodingKeys.queues, .array, "queue ids"),
        ]

        struct Request: Codable, Sendable {
            var iface: InterfaceName
            var ringSize: UInt16
            var queues: [UInt32]?

            enum CodingKeys: String, CodingKey {
                case iface, queues
                case ringSize = "ring_size"
            }
        }

        struct Response: Codable, Sendable {
            var iface: InterfaceName
            var ringSize: UInt16
            var queueCount: Int

            enum CodingKeys: String, CodingKey {
                case iface
                case ringSize = "ring_size"
                case queueCount = "queue_count"
            }
        }
    }

    var harness: ServerHarness!

    override func setUpWithError() throws {
        harness = try ServerHarness()
        harness.registry.register(Resize.self) { request, _ in
            .init(iface: request.iface, ringSize: request.ringSize, queueCount: request.queues?.count ?? 0)
        }
    }

    override func tearDown() {
        harness?.stop()
    }

    func testRequestDecodesAndReplyKeepsItsWireNames() throws {
        let client = try harness.client()
        let reply = try client.call(
            Resize.self, .init(iface: try InterfaceName("eth0"), ringSize: 512, queues: [0, 1]))
        XCTAssertTrue(reply.isOK, reply.serialized())
        XCTAssertEqual(reply["result"], ["iface": "eth0", "ring_size": 512, "queue_count": 2])
        let typed = try XCTUnwrap(reply["result"]).decode(as: Resize.Response.self)
        XCTAssertEqual(typed.ringSize, 512)
    }

    func testBadArgumentsAreInvalidArgumentNamingTheArgument() throws {
        let client = try harness.client()
        let cases: [([String: JSONValue], String)] = [
            (["iface": "eth0", "ring_size": 64, "rign": 1], "unknown argument \"rign\" for test.resize"),
            (["iface": "eth0"], "test.resize needs the argument \"ring_size\""),
            (["iface": "eth0", "ring_size": "big"], "ring_size must be a value of type integer, got string"),
            (["iface": "eth0", "ring_size": 32], "ring_size 32 is out of range 64...4096"),
            (["iface": "eth0", "ring_size": .uint(UInt64.max)],
             "ring_size 18446744073709551615 is out of range 64...4096"),
            (["iface": "../etc", "ring_size": 64], "iface: interface name \"../etc\" contains"),
            (["iface": "eth0", "ring_size": 64, "queues": [1, "two"]], "queues[1]"),
            // Foundation's decoder loses the path of a negative unsigned number; still refused, never a trap.
            (["iface": "eth0", "ring_size": 64, "queues": [1, -1]], "test.resize: "),
        ]
        for (arguments, message) in cases {
            let reply = try client.call("test.resize", arguments: arguments)
            XCTAssertEqual(reply.errorCode, "invalid_argument", reply.serialized())
            XCTAssertTrue(reply["error"]?["message"]?.stringValue?.contains(message) ?? false, reply.serialized())
        }
    }

    func testAnUnknownEnumerationValueNamesTheKnownOnes() {
        XCTAssertThrowsError(try JSONValue.string("tcp5").decode(as: HashFlowType.self)) { error in
            XCTAssertTrue("\(error)".contains("\"tcp5\" is not one of tcp4, udp4"), "\(error)")
        }
        XCTAssertEqual(try JSONValue.string("udp6").decode(as: HashFlowType.self), .udp6)
    }

    func testHelpListsTheDeclaredArguments() throws {
        let reply = try harness.client().call(Methods.Help.self, NoArguments())
        let help = try XCTUnwrap(reply["result"]).decode(as: Methods.Help.Response.self)
        let resize = try XCTUnwrap(help.commands.first { $0.name == "test.resize" })
        XCTAssertEqual(resize.arguments.map(\.name), ["iface", "ring_size", "queues"])
        XCTAssertEqual(resize.arguments.map(\.required), [true, true, false])
        XCTAssertEqual(resize.arguments.map(\.type), [.string, .integer, .array])
    }
}
