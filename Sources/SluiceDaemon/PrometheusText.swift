import Foundation

/// Builds the Prometheus text exposition format, version 0.0.4: per family a
/// `# HELP` and a `# TYPE` line, then its samples `name{label="value"} value`.
/// Families are written whole, so a family's samples are never split.
struct PrometheusText {
    enum Kind: String {
        case counter, gauge
    }

    struct Sample {
        var labels: [(String, String)]
        var value: String

        init(_ labels: [(String, String)] = [], _ value: UInt64) {
            self.labels = labels
            self.value = String(value)
        }

        init(_ labels: [(String, String)] = [], _ value: Int) {
            self.labels = labels
            self.value = String(value)
        }

        init(_ labels: [(String, String)] = [], _ value: Double) {
            self.labels = labels
            self.value = value.isFinite ? "\(value)" : (value.isNaN ? "NaN" : (value > 0 ? "+Inf" : "-Inf"))
        }

        init(_ labels: [(String, String)] = [], _ flag: Bool) {
            self.init(labels, flag ? 1 : 0)
        }
    }

    private(set) var text = ""

    /// Counters end in `_total` (the OpenMetrics convention Prometheus
    /// follows); checked here so that a new family cannot break it.
    mutating func family(_ name: String, _ kind: Kind, _ help: String, _ samples: [Sample]) {
        precondition(kind != .counter || name.hasSuffix("_total"), "counter \(name) must end in _total")
        text += "# HELP \(name) \(Self.escapeHelp(help))\n# TYPE \(name) \(kind.rawValue)\n"
        for sample in samples {
            text += name
            if !sample.labels.isEmpty {
                text += "{"
                text += sample.labels.map { "\($0.0)=\"\(Self.escapeLabelValue($0.1))\"" }.joined(separator: ",")
                text += "}"
            }
            text += " \(sample.value)\n"
        }
    }

    /// Label values escape backslash, double quote and line feed.
    static func escapeLabelValue(_ value: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(value.utf8.count)
        for character in value.unicodeScalars {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.unicodeScalars.append(character)
            }
        }
        return escaped
    }

    /// HELP text escapes backslash and line feed.
    static func escapeHelp(_ help: String) -> String {
        help.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }
}
