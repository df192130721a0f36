import SluiceControl
import SluiceProtocol

/// The daemon's NIC results (SluiceProtocol's types; rules still as JSON) printed
/// the way `ethtool` prints the same facts, so its users can read them
/// without learning a second layout.
enum EthtoolText {
    /// `ethtool -l` / `-g` print "n/a" for a count whose maximum is 0: the
    /// kernel leaves such attributes out because the driver has no such queue.
    static func countBlock(_ counts: [(label: String, current: UInt32, maximum: UInt32)]) -> [String] {
        func line(_ label: String, _ value: UInt32, maximum: UInt32) -> String {
            label + ":" + (label.count + 1 < 8 ? "\t\t" : "\t") + (maximum == 0 ? "n/a" : String(value))
        }
        return ["Pre-set maximums:"] + counts.map { line($0.label, $0.maximum, maximum: $0.maximum) }
            + ["Current hardware settings:"] + counts.map { line($0.label, $0.current, maximum: $0.maximum) }
    }

    /// "(via netlink)": which ethtool interface the daemon used.
    static func backendLine(_ backend: EthtoolBackend?) -> String {
        "(via \(backend?.rawValue ?? "unknown backend"))"
    }

    /// `ethtool -l IF`
    static func channels(_ served: Served<Channels>, interface: InterfaceName) -> String {
        let value = served.value
        return (["Channel parameters for \(interface):"]
            + countBlock([
                ("RX", value.rx, value.maxRX), ("TX", value.tx, value.maxTX), ("Other", value.other, value.maxOther),
                ("Combined", value.combined, value.maxCombined),
            ]) + [backendLine(served.backend)]).joined(separator: "\n")
    }

    /// `ethtool -g IF`
    static func rings(_ served: Served<Rings>, interface: InterfaceName) -> String {
        let value = served.value
        return (["Ring parameters for \(interface):"]
            + countBlock([
                ("RX", value.rx, value.rxMax), ("RX Mini", value.rxMini, value.rxMiniMax),
                ("RX Jumbo", value.rxJumbo, value.rxJumboMax), ("TX", value.tx, value.txMax),
            ]) + [backendLine(served.backend)]).joined(separator: "\n")
    }

    /// One line of `ethtool -k`: "name: on [fixed]" or "name: off [requested on]".
    static func featureLine(_ feature: Feature) -> String {
        var line = "\(feature.name): \(onOff(feature.active))"
        if !feature.changeable {
            line += " [fixed]"
        } else if feature.requested != feature.active {
            line += " [requested \(onOff(feature.requested))]"
        }
        return line
    }

    static func features(_ served: Served<Features>, interface: InterfaceName) -> String {
        (["Features for \(interface):"] + served.value.features.map(featureLine) + [backendLine(served.backend)])
            .joined(separator: "\n")
    }

    static func onOff(_ value: Bool) -> String { value ? "on" : "off" }

    /// `ethtool -S IF`, then the per-queue counters grouped by queue.
    static func statistics(_ served: Served<DriverStatistics>) -> String {
        var lines = ["NIC statistics:"] + served.value.counters.map { "     \($0.name): \($0.value)" }
        if !served.value.queues.isEmpty {
            lines.append("Per-queue statistics:")
            for queue in served.value.queues {
                lines.append("     \(queue.direction.rawValue) queue \(queue.queue):")
                lines += queue.counters.keys.sorted().map { "          \($0): \(queue.counters[$0]!)" }
            }
        }
        lines.append(backendLine(served.backend))
        return lines.joined(separator: "\n")
    }

    // MARK: Flow hashing and RSS

    /// ethtool's names for the flow types of `rx-flow-hash`.
    static func hashFlowTypeName(_ type: String) -> String {
        switch type {
        case "tcp4": return "TCP over IPV4"
        case "udp4": return "UDP over IPV4"
        case "sctp4": return "SCTP over IPV4"
        case "ah4", "esp4": return "IPSEC AH/ESP over IPV4"
        case "tcp6": return "TCP over IPV6"
        case "udp6": return "UDP over IPV6"
        case "sctp6": return "SCTP over IPV6"
        case "ah6", "esp6": return "IPSEC AH/ESP over IPV6"
        case "ip4": return "IPV4"
        case "ip6": return "IPV6"
        default: return type
        }
    }

    static let hashFieldNames: [(Character, String)] = [
        ("m", "L2DA"), ("v", "VLAN tag"), ("t", "L3 proto"), ("s", "IP SA"), ("d", "IP DA"),
        ("f", "L4 bytes 0 & 1 [TCP/UDP src port]"), ("n", "L4 bytes 2 & 3 [TCP/UDP dst port]"),
    ]

    /// `ethtool -n IF rx-flow-hash TYPE`
    static func flowHash(_ served: Served<String>, flowType: String) -> String {
        let letters = served.value
        var lines: [String]
        if letters.contains("r") {
            lines = ["All matching flows discarded on RX"]
        } else {
            lines = ["\(hashFlowTypeName(flowType)) flows use these fields for computing Hash flow key:"]
            let fields = hashFieldNames.filter { letters.contains($0.0) }.map(\.1)
            lines += fields.isEmpty ? ["None"] : fields
        }
        return (lines + [backendLine(served.backend)]).joined(separator: "\n")
    }

    /// `ethtool -x IF`: eight entries a line, each line led by its first index.
    static func rss(_ served: Served<RSSConfiguration>, interface: InterfaceName, rxRings: UInt64?) -> String {
        let value = served.value
        let table = value.indirectionTable.map(String.init)
        let rings = rxRings.map { "with \($0) RX ring(s)" } ?? "of \(table.count) entries"
        var lines = ["RX flow hash indirection table for \(interface) \(rings):"]
        var start = 0
        while start < table.count {
            let row = table[start..<min(start + 8, table.count)]
            lines.append(pad(String(start), 5) + ": " + row.map { pad($0, 5) }.joined(separator: " "))
            start += 8
        }
        if table.isEmpty { lines.append("Operation not supported") }
        lines.append("RSS hash key:")
        lines.append(value.hashKey.isEmpty ? "Operation not supported" : value.hashKey)
        lines.append("RSS hash function:")
        // ETH_RSS_HASH_TOP / XOR / CRC32 are bits 0, 1, 2 of hfunc.
        for (bit, name) in [(0, "toeplitz"), (1, "xor"), (2, "crc32")] {
            lines.append("    \(name): \(onOff(value.hashFunction & (1 << bit) != 0))")
        }
        lines.append(backendLine(served.backend))
        return lines.joined(separator: "\n")
    }

    /// Right-aligned, as printf("%5u").
    static func pad(_ text: String, _ width: Int) -> String {
        String(repeating: " ", count: max(0, width - text.count)) + text
    }
}
