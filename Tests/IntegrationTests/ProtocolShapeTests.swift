import Foundation
import SluiceControl
import SluiceTestSupport
import XCTest

/// Pins the JSON *shape* of every control method's successful reply (protocol
/// v1), so that a refactor of the wire API cannot silently rename or drop a
/// field, and pins the method list itself: `help` must list exactly the
/// methods of the golden file.
///
/// A real daemon runs a pipeline (count module) on a 4-queue lab veth; every
/// method with a harmless call on that setup is called and its `result` is
/// reduced to a shape: object keys (the exact set) and value kinds (string,
/// number, bool, null, object, array), recursively; an array becomes the list
/// of its elements' distinct shapes (one entry when all elements agree, a
/// union otherwise). Values are never compared. Objects keyed by data rather
/// than by schema (``mapPaths``) keep one `"<key>"` entry. The methods that
/// would change the NIC or the running setup are listed as `not_called`, with
/// the reason.
///
/// The golden file is Tests/IntegrationTests/Golden/protocol-v1-shapes.json.
/// After an intended change of the wire API, regenerate it and review the diff:
///
///     SLUICE_UPDATE_GOLDEN=1 SLUICE_REQUIRE_PRIVILEGED=1 \
///         swift test --filter ProtocolShapeTests
final class ProtocolShapeTests: LabDaemonTestCase {
    override class var labPrefix: String { "sshape" }

    static var goldenURL: URL {
        repositoryRoot.appendingPathComponent("Tests/IntegrationTests/Golden/protocol-v1-shapes.json")
    }

    /// Methods without a call here, and why: each would change the NIC, the
    /// plugins or the pipeline this test reads, or has no success reply on veth.
    static let notCalled: [String: String] = [
        "channels.set": "changes the NIC's channel count under the running pipeline",
        "features.set": "changes the NIC's offload features",
        "rings.set": "changes the NIC's ring sizes",
        "flowhash.set": "changes the NIC's rx flow hash fields",
        "rss.set": "changes the NIC's RSS indirection table",
        "nic.restore": "undoes the running pipeline's NIC changes under it",
        "plugins.reload": "replies busy while a pipeline uses a plugin (the setup pinned here)",
        "steer.del": "veth has no ntuple rules to delete (a dry-run steer.add is covered instead)",
        "steer.list": "veth has no ntuple filters: the reply is an error, not a result",
        "rings.get": "veth has no ring parameters: the reply is an error, not a result",
        "rss.get": "veth has no RSS indirection table: the reply is an error, not a result",
        "flowhash.get": "veth has no rx flow hash: the reply is an error, not a result",
    ]

    /// Paths (method, then keys; "[]" for an array's elements) of objects
    /// keyed by data, e.g. by channel number or driver counter name.
    /// (Per-queue driver counters differ between rx and tx and between kernels.)
    static let mapPaths: Set<[String]> = [
        ["plugins.explain", "socket_modes"],
        ["stats.get", "control", "errors_by_code"],
        ["nic.stats", "value", "queues", "[]", "counters"],
    ]

    func testEveryMethodsReplyHasTheGoldenShape() throws {
        // This test's own daemon: the base class's one has no pipeline.
        daemon.stop()
        daemon = try DaemonProcess(extraConfig: DaemonProcess.pipelineConfig(
            pluginDirectory: plugins.path, interface: app, modules: """
                [[pipeline.modules]]
                kind = "count"
                top = 10
                """))
        try daemon.start()
        try daemon.waitForPipeline()

        let help = try result(of: "help")
        let specs = try XCTUnwrap(help["commands"]?.arrayValue, help.serialized())
        var levels: [String: String] = [:]
        for spec in specs {
            let name = try XCTUnwrap(spec["name"]?.stringValue, spec.serialized())
            levels[name] = try XCTUnwrap(spec["level"]?.stringValue, spec.serialized())
        }

        let iface: [String: JSONValue] = ["iface": .string(app)]
        // Label → reply shape, per method.
        var replies: [String: [String: JSONValue]] = [:]
        func record(_ method: String, _ label: String, _ arguments: [String: JSONValue] = [:]) throws {
            replies[method, default: [:]][label] = Self.shape(try result(of: method, arguments), at: [method])
        }
        try record("help", "no arguments")
        try record("status", "no arguments")
        try record("stats.get", "no arguments")
        try record("pipeline.status", "no arguments")
        try record("plugins.list", "no arguments")
        try record("plugins.explain", "iface with a running pipeline", iface)
        try record("plugins.explain", "what-if: mlx5_core, 4 channels", ["driver": "mlx5_core", "channels": 4])
        try record("doctor", "iface, sample_ms 0", iface.merging(["sample_ms": 0]) { $1 })
        try record("nic.show", "lab app interface", iface)
        try record("nic.stats", "lab app interface", iface)
        try record("channels.get", "lab app interface", iface)
        try record("features.get", "lab app interface", iface)
        try record("steer.add", "dry run, channel 0", iface.merging([
            "flow_type": "udp4", "dst_port": 4242, "channel": 0, "dry_run": true,
        ]) { $1 })
        try record("config.reload", "unchanged file")
        // nic.list lists the host's interfaces too: only the lab's entry is pinned.
        let listing = try result(of: "nic.list")
        let entries = try XCTUnwrap(listing["interfaces"]?.arrayValue, listing.serialized())
        let labEntry = try XCTUnwrap(entries.first { $0["name"] == .string(app) }, listing.serialized())
        var pinned = try XCTUnwrap(listing.objectValue)
        pinned["interfaces"] = .array([labEntry])
        replies["nic.list", default: [:]]["the lab app interface's entry"] = Self.shape(.object(pinned), at: ["nic.list"])
        // Streams: subscribe and unsubscribe on one connection.
        for (stream, arguments) in [("stats", ["interval_ms": JSONValue(60_000)]), ("trace", iface)] {
            let client = try daemon.client()
            defer { client.close() }
            let subscribed = try client.call("\(stream).subscribe", arguments: arguments)
            XCTAssertEqual(subscribed["ok"], true, subscribed.serialized())
            replies["\(stream).subscribe", default: [:]]["one connection"] =
                Self.shape(subscribed["result"] ?? .null, at: ["\(stream).subscribe"])
            let unsubscribed = try client.call("\(stream).unsubscribe")
            XCTAssertEqual(unsubscribed["ok"], true, unsubscribed.serialized())
            replies["\(stream).unsubscribe", default: [:]]["after subscribe, same connection"] =
                Self.shape(unsubscribed["result"] ?? .null, at: ["\(stream).unsubscribe"])
        }
        // The pipeline last: stop it, start it again, then shut the daemon down.
        try record("pipeline.stop", "iface", iface)
        try record("pipeline.start", "iface", iface)
        try daemon.waitForPipeline()
        try record("shutdown", "no arguments")
        try daemon.waitForExit()

        // Every listed method is either called or given a reason.
        let covered = Set(replies.keys).union(Self.notCalled.keys)
        XCTAssertEqual(Set(levels.keys).subtracting(covered).sorted(), [],
                       "methods help lists with neither a call in this test nor a not_called reason")
        XCTAssertEqual(covered.subtracting(levels.keys).sorted(), [],
                       "methods this test covers that help does not list")
        var methods: [String: JSONValue] = [:]
        for (name, level) in levels {
            var entry: [String: JSONValue] = ["level": .string(level)]
            if let shapes = replies[name] { entry["replies"] = .object(shapes) }
            if let reason = Self.notCalled[name] { entry["not_called"] = .string(reason) }
            methods[name] = .object(entry)
        }
        let actual: JSONValue = ["protocol": JSONValue(ControlProtocol.version), "methods": .object(methods)]

        if ProcessInfo.processInfo.environment["SLUICE_UPDATE_GOLDEN"] == "1" {
            try FileManager.default.createDirectory(
                at: Self.goldenURL.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Self.pretty(actual).write(to: Self.goldenURL)
            return
        }
        let golden = try JSONValue.parse(try Data(contentsOf: Self.goldenURL))
        XCTAssertEqual(
            ((golden["methods"]?.objectValue).map { Set($0.keys) } ?? []).sorted(), Set(levels.keys).sorted(),
            "the methods help lists differ from the golden file's (SLUICE_UPDATE_GOLDEN=1 regenerates it)")
        var differences: [String] = []
        Self.compare(golden, actual, path: "", into: &differences)
        XCTAssertEqual(differences, [], """
            the replies differ from \(Self.goldenURL.path) (golden → now); \
            if the change is intended, regenerate with SLUICE_UPDATE_GOLDEN=1 and review the diff
            """)
    }

    /// A method's `result`, failing the test (with the error) when it is not ok.
    private func result(of method: String, _ arguments: [String: JSONValue] = [:]) throws -> JSONValue {
        let reply = try daemon.call(method, arguments)
        XCTAssertEqual(reply["ok"], true, "\(method) \(JSONValue.object(arguments).serialized()): \(reply.serialized())")
        return try XCTUnwrap(reply["result"], "\(method): \(reply.serialized())")
    }

    /// The kind of every value, recursively; see the type's comment.
    static func shape(_ value: JSONValue, at path: [String]) -> JSONValue {
        switch value {
        case .null: return "null"
        case .bool: return "bool"
        case .int, .uint, .double: return "number"
        case .string: return "string"
        case .array(let elements):
            return union(elements.map { shape($0, at: path + ["[]"]) })
        case .object(let members):
            if mapPaths.contains(path) {
                let values = union(members.values.map { shape($0, at: path + ["<key>"]) })
                guard case .array(let kinds) = values, !kinds.isEmpty else { return [:] }
                return ["<key>": kinds.count == 1 ? kinds[0] : values]
            }
            return .object(members.reduce(into: [:]) { $0[$1.key] = shape($1.value, at: path + [$1.key]) })
        }
    }

    /// The distinct shapes, in a stable order.
    private static func union(_ shapes: [JSONValue]) -> JSONValue {
        var seen: [String: JSONValue] = [:]
        for shape in shapes { seen[shape.serialized()] = shape }
        return .array(seen.keys.sorted().map { seen[$0]! })
    }

    /// Pretty-printed with sorted keys, ending in a newline.
    static func pretty(_ value: JSONValue) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(value) + Data("\n".utf8)
    }

    /// Readable differences between two shape documents.
    static func compare(_ golden: JSONValue, _ actual: JSONValue, path: String, into differences: inout [String]) {
        switch (golden, actual) {
        case (.object(let old), .object(let new)):
            for key in Set(old.keys).union(new.keys).sorted() {
                let here = path.isEmpty ? key : "\(path).\(key)"
                switch (old[key], new[key]) {
                case (let was?, let now?): compare(was, now, path: here, into: &differences)
                case (let was?, nil): differences.append("\(here): gone (was \(was.serialized()))")
                case (nil, let now?): differences.append("\(here): new (\(now.serialized()))")
                case (nil, nil): break
                }
            }
        default:
            if golden != actual {
                differences.append("\(path): \(golden.serialized()) → \(actual.serialized())")
            }
        }
    }
}
