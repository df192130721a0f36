import ArgumentParser
import Foundation
import SluiceControl

#if canImport(Glibc)
import Glibc
#endif

struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Why a bound queue sees no packets: findings with evidence and the fix (exit 0 even with warnings).")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Only this interface.") var iface: String?

    @Option(name: .long, help: "Milliseconds to watch the xdp tracepoints (0...10000).")
    var sample: Int = 1000

    func validate() throws {
        guard (0...10_000).contains(sample) else { throw ValidationError("--sample must be 0...10000") }
    }

    func run() throws {
        var arguments: [String: JSONValue] = ["sample_ms": JSONValue(sample)]
        if let iface { arguments["iface"] = .string(iface) }
        let result = try connection.call("doctor", arguments)
        if connection.json { return }
        print(DoctorText.render(result, colored: isatty(STDOUT_FILENO) == 1))
    }
}

enum DoctorText {
    static func render(_ result: JSONValue, colored: Bool) -> String {
        let findings = result["findings"]?.arrayValue ?? []
        var lines: [String] = []
        for finding in findings {
            let severity = finding["severity"]?.stringValue ?? "?"
            let label = severity.uppercased().padding(toLength: 7, withPad: " ", startingAt: 0)
            let interface = finding["interface"]?.stringValue ?? ""
            let head = "\(paint(label, severity, colored)) \(interface.isEmpty ? "" : interface + ": ")\(finding["title"]?.stringValue ?? "")"
            lines.append(head)
            for evidence in finding["evidence"]?.arrayValue ?? [] {
                lines.append("        · \(evidence.stringValue ?? evidence.serialized())")
            }
            if let fix = finding["fix"]?.stringValue { lines.append("        fix: \(fix)") }
        }
        let errors = result["errors"]?.integer(as: Int.self) ?? 0
        let warnings = result["warnings"]?.integer(as: Int.self) ?? 0
        lines.append(errors + warnings == 0 ? "no problems found" : "\(errors) error(s), \(warnings) warning(s)")
        lines += kernelFeatures(result["kernel_features"]?.arrayValue ?? [])
        return lines.joined(separator: "\n")
    }

    /// One line per optional kernel feature, and what Sluice does without
    /// the ones this kernel lacks (or that could not be probed).
    static func kernelFeatures(_ features: [JSONValue]) -> [String] {
        guard !features.isEmpty else { return [] }
        var lines = ["", "kernel features:"]
        for feature in features {
            let state = feature["state"]?.stringValue ?? "?"
            let name = feature["name"]?.stringValue ?? "?"
            lines.append("  \(state.padding(toLength: 8, withPad: " ", startingAt: 0)) \(name): \(feature["title"]?.stringValue ?? ""), Linux \(feature["since"]?.stringValue ?? "?")+")
            lines.append("           · \(feature["detail"]?.stringValue ?? "")")
            if state != "found" {
                lines.append("           \(state == "missing" ? "without it" : "if missing"): \(feature["without"]?.stringValue ?? "")")
            }
        }
        return lines
    }

    private static func paint(_ text: String, _ severity: String, _ colored: Bool) -> String {
        guard colored else { return text }
        let code: String
        switch severity {
        case "error": code = "31;1"
        case "warning": code = "33;1"
        case "ok": code = "32"
        default: code = "36"
        }
        return "\u{1B}[\(code)m\(text)\u{1B}[0m"
    }
}

struct Trace: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stream xdp:* tracepoint events of the interfaces Sluice owns.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Only this interface.") var iface: String?

    @Option(name: .long, help: "Stop after this many events.")
    var count: Int?

    @Option(name: .long, parsing: .upToNextOption, help: "Only these events (e.g. xdp_exception xdp_redirect_err).")
    var events: [String] = []

    func validate() throws {
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
    }

    func run() throws {
        let client: ControlClient
        do {
            // Events may be minutes apart: a long receive timeout, and a
            // timeout only means "nothing yet".
            client = try ControlClient(socketPath: connection.socket, timeout: .seconds(3600))
        } catch let error as ControlClientError {
            throw CommandFailure(status: Exit.unreachable, message: error.description)
        }
        defer { client.close() }
        var arguments: [String: JSONValue] = [:]
        if let iface { arguments["iface"] = .string(iface) }
        if !events.isEmpty { arguments["events"] = .array(events.map { .string($0) }) }
        var seen = 0
        do {
            let reply = try client.call("trace.subscribe", arguments: arguments)
            guard reply["ok"] == .bool(true) else {
                throw CommandFailure(status: Exit.commandFailed,
                                     message: "trace.subscribe: " + (reply["error"]?["message"]?.stringValue ?? reply.serialized()))
            }
            if !connection.json {
                let result = reply["result"]
                let names = result?["events"]?.arrayValue?.compactMap(\.stringValue) ?? []
                let owned = result?["interfaces"]?.arrayValue?.compactMap(\.stringValue) ?? []
                print("tracing \(names.map { "xdp:" + $0 }.joined(separator: " ")) on \(owned.isEmpty ? "no interface yet" : owned.joined(separator: ", "))")
                fflush(stdout)
            }
            while count.map({ seen < $0 }) ?? true {
                let line: String?
                do {
                    line = try client.readLine()
                } catch ControlClientError.timedOut {
                    continue
                }
                guard let line else { throw CommandFailure(status: Exit.unreachable, message: "sluiced closed the connection") }
                guard let event = try? JSONValue.parse(Array(line.utf8)), event["event"] == .string("trace"),
                    let data = event["data"]
                else { continue }
                seen += 1
                print(connection.json ? event.serialized() : text(data))
                fflush(stdout)
            }
        } catch let error as ControlClientError {
            throw CommandFailure(status: Exit.unreachable, message: error.description)
        }
    }

    private func text(_ data: JSONValue) -> String {
        if data["event"] == .string("lost") { return "(\(data["count"]?.serialized() ?? "?") events lost)" }
        var parts = ["xdp:\(data["event"]?.stringValue ?? "?")"]
        if let iface = data["iface"]?.stringValue { parts.append(iface) }
        for key in ["action", "prog_id", "err", "to_ifindex", "map_id", "map_index"] {
            if let value = data[key], value != .null { parts.append("\(key)=\(value.stringValue ?? value.serialized())") }
        }
        return parts.joined(separator: " ")
    }
}
