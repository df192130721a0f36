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
    @Argument(help: "Only this interface.", transform: InterfaceName.argument) var iface: InterfaceName?

    @Option(name: .long, help: "Milliseconds to watch the xdp tracepoints (0...10000).")
    var sample: Int = 1000

    func validate() throws {
        guard (0...10_000).contains(sample) else { throw ValidationError("--sample must be 0...10000") }
    }

    func run() throws {
        let report = try connection.call(
            Methods.Doctor.self, .init(iface: iface, sampleMilliseconds: sample))
        if connection.json { return }
        print(DoctorText.render(report, colored: isatty(STDOUT_FILENO) == 1))
    }
}

enum DoctorText {
    static func render(_ report: Methods.Doctor.Response, colored: Bool) -> String {
        var lines: [String] = []
        for finding in report.findings {
            let severity = finding.severity.rawValue
            let label = severity.uppercased().padding(toLength: 7, withPad: " ", startingAt: 0)
            let interface = finding.interface
            lines.append("\(paint(label, severity, colored)) \(interface.isEmpty ? "" : interface + ": ")\(finding.title)")
            lines += finding.evidence.map { "        · \($0)" }
            if let fix = finding.fix { lines.append("        fix: \(fix)") }
        }
        let errors = report.errors, warnings = report.warnings
        lines.append(errors + warnings == 0 ? "no problems found" : "\(errors) error(s), \(warnings) warning(s)")
        lines += kernelFeatures(report.kernelFeatures)
        return lines.joined(separator: "\n")
    }

    /// One line per optional kernel feature, and what Sluice does without
    /// the ones this kernel lacks (or that could not be probed).
    static func kernelFeatures(_ features: [KernelFeatureReport]) -> [String] {
        guard !features.isEmpty else { return [] }
        var lines = ["", "kernel features:"]
        for feature in features {
            let state = feature.state.rawValue
            lines.append("  \(state.padding(toLength: 8, withPad: " ", startingAt: 0)) \(feature.name): \(feature.title), Linux \(feature.since)+")
            lines.append("           · \(feature.detail)")
            if feature.state != .found {
                lines.append("           \(feature.state == .missing ? "without it" : "if missing"): \(feature.without)")
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
    @Argument(help: "Only this interface.", transform: InterfaceName.argument) var iface: InterfaceName?

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
        var seen = 0
        do {
            let reply = try client.call(Methods.TraceSubscribe.self, .init(
                iface: iface, events: events.isEmpty ? nil : events))
            guard reply["ok"] == .bool(true) else {
                throw CommandFailure(status: Exit.commandFailed,
                                     message: "trace.subscribe: " + (reply["error"]?["message"]?.stringValue ?? reply.serialized()))
            }
            if !connection.json {
                let subscribed = try (reply["result"] ?? .null).decode(as: Methods.TraceSubscribe.Response.self)
                let owned = subscribed.interfaces.map(\.rawValue)
                print("tracing \(subscribed.events.map { "xdp:" + $0 }.joined(separator: " ")) on \(owned.isEmpty ? "no interface yet" : owned.joined(separator: ", "))")
                flushStandardOutput()
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
                    let data = try? (event["data"] ?? .null).decode(as: TraceEvent.self)
                else { continue }
                seen += 1
                print(connection.json ? event.serialized() : text(data))
                flushStandardOutput()
            }
        } catch let error as ControlClientError {
            throw CommandFailure(status: Exit.unreachable, message: error.description)
        }
    }

    private func text(_ event: TraceEvent) -> String {
        if event.event == "lost" { return "(\(event.count.map(String.init) ?? "?") events lost)" }
        var parts = ["xdp:\(event.event)"]
        if let iface = event.iface { parts.append(iface) }
        let fields: [(String, String?)] = [
            ("action", event.action), ("prog_id", event.progID.map(String.init)), ("err", event.err.map(String.init)),
            ("to_ifindex", event.toIfindex.map(String.init)), ("map_id", event.mapID.map(String.init)),
            ("map_index", event.mapIndex.map(String.init)),
        ]
        for case let (key, value?) in fields { parts.append("\(key)=\(value)") }
        return parts.joined(separator: " ")
    }
}
