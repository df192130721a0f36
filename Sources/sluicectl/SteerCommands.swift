import ArgumentParser
import SluiceControl
import SluiceProtocol

#if canImport(Glibc)
import Glibc
#endif

struct SteerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "steer", abstract: "ntuple rules, as ethtool -N / -n.", subcommands: [Add.self, Delete.self, List.self])

    /// Accepts --socket/--json before the subcommand, as ``NICCommand/connection``.
    @OptionGroup(visibility: .hidden) var connection: ConnectionOptions

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add an ntuple rule with ethtool -N words.",
            usage: "sluicectl steer add IF flow-type udp4 [src-ip A [m M]] [dst-ip A [m M]] [src-port P [m M]] "
                + "[dst-port P [m M]] [src MAC] [dst MAC] [proto N] [vlan V [m M]] (action Q | action drop | channel C) "
                + "[loc L] [--dry-run] [--plugin NAME]",
            discussion: """
                `m` masks are ethtool's: set bits are ignored. src-ip-mask, dst-ip-mask, src-port-mask, dst-port-mask \
                and vlan-mask take the opposite, the bits that must match. `action -1` is `action drop`. \
                `channel C` lets the interface's driver plugin pick the queue (old mlx5: channel 2 of 4 is queue 6). \
                Prints the rule, the queue and the equivalent ethtool line.
                """)
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Interface name, e.g. eth0.", transform: InterfaceName.argument) var interface: InterfaceName
        @Argument(parsing: .allUnrecognized, help: "ethtool -N words: flow-type TYPE, fields, action/channel, loc.")
        var words: [String] = []
        @Flag(name: .customLong("dry-run"), help: "Change nothing: show the rule, its queue and the ethtool line.")
        var dryRun = false
        @Option(help: "Use this driver plugin for the channel -> queue mapping.") var plugin: String?

        func validate() throws {
            _ = try SteerWords.arguments(words)
            if let plugin, plugin.isEmpty || plugin.utf8.count > 64 {
                throw ValidationError("--plugin must be a plugin name of 1-64 characters")
            }
        }

        func run() throws {
            var request = try SteerWords.request(words, iface: interface)
            if dryRun { request.dryRun = true }
            request.plugin = plugin
            let result = try connection.call(Methods.SteerAdd.self, request)
            if !connection.json { print(RuleText.added(result, interface: interface)) }
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "del", abstract: "Delete the rule at a location (ethtool -N IF delete LOC).", aliases: ["delete"])
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Interface name, e.g. eth0.", transform: InterfaceName.argument) var interface: InterfaceName
        @Argument(help: "The rule's location (loc), as steer list shows it.") var location: UInt32

        func run() throws {
            _ = try connection.call(Methods.SteerDelete.self, .init(iface: interface, location: location))
            if !connection.json { print("Deleted the rule at loc \(location) on \(interface).") }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the interface's ntuple rules (ethtool -n).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Interface name, e.g. eth0.", transform: InterfaceName.argument) var interface: InterfaceName

        func run() throws {
            let rules = try connection.call(Methods.SteerList.self, .init(iface: interface))
            if connection.json { return }
            var lines = ["Total \(rules.value.count) rules"]
            for rule in rules.value {
                lines += ["", "Filter: \(text(rule.location.map(String.init)))"] + RuleText.fields(rule).map { "\t" + $0 }
            }
            lines.append(EthtoolText.backendLine(rules.backend))
            print(lines.joined(separator: "\n"))
        }
    }
}

/// `ethtool -N` words to `steer.add` arguments. Everything is checked here
/// (names, numbers, ranges, repeats) so mistakes are usage errors naming
/// the word.
enum SteerWords {
    static let flowTypes = ["tcp4", "udp4", "tcp6", "udp6", "ip4", "ip6", "ether"]

    private enum Kind { case address, port, mac, etherType, vlan, queue, location, flowType }

    typealias Key = Methods.SteerAdd.Request.CodingKeys

    /// word → (request field, kind, the field its `m` mask goes to).
    private static let fields: [String: (key: Key, kind: Kind, mask: Key?)] = [
        "flow-type": (.flowType, .flowType, nil),
        "src-ip": (.sourceAddress, .address, .sourceAddressMask), "dst-ip": (.destinationAddress, .address, .destinationAddressMask),
        "src-port": (.sourcePort, .port, .sourcePortMask), "dst-port": (.destinationPort, .port, .destinationPortMask),
        "src": (.sourceMAC, .mac, nil), "dst": (.destinationMAC, .mac, nil),
        "src-mac": (.sourceMAC, .mac, nil), "dst-mac": (.destinationMAC, .mac, nil),
        "proto": (.etherType, .etherType, nil), "vlan": (.vlan, .vlan, .vlanMask),
        "src-ip-mask": (.sourceAddressMask, .address, nil), "dst-ip-mask": (.destinationAddressMask, .address, nil),
        "src-port-mask": (.sourcePortMask, .port, nil), "dst-port-mask": (.destinationPortMask, .port, nil),
        "vlan-mask": (.vlanMask, .vlan, nil),
        "action": (.queue, .queue, nil), "channel": (.channel, .location, nil), "loc": (.location, .location, nil),
    ]

    /// The `steer.add` request the words describe.
    static func request(_ words: [String], iface: InterfaceName) throws -> Methods.SteerAdd.Request {
        var fields = try arguments(words)
        fields[.iface] = .string(iface.rawValue)
        return try JSONValue.object(Dictionary(uniqueKeysWithValues: fields.map { ($0.key.rawValue, $0.value) })).decode()
    }

    static func arguments(_ words: [String]) throws -> [Key: JSONValue] {
        guard words.count <= 64 else { throw ValidationError("too many words for one rule (at most 64)") }
        var arguments: [Key: JSONValue] = [:]
        var family: Int32 = AF_INET
        if let index = words.firstIndex(of: "flow-type"), index + 1 < words.count {
            family = words[index + 1].hasSuffix("6") ? AF_INET6 : AF_INET
        }
        var index = 0
        var lastMaskable: (word: String, key: Key, kind: Kind)?
        while index < words.count {
            let word = words[index]
            guard index + 1 < words.count else { throw ValidationError("\(word.prefix(32)) needs a value") }
            let value = words[index + 1]
            index += 2
            if word == "m" {
                guard let target = lastMaskable else {
                    throw ValidationError("m (mask) must follow src-ip, dst-ip, src-port, dst-port or vlan")
                }
                guard arguments[target.key] == nil else { throw ValidationError("\(target.word) has two masks") }
                arguments[target.key] = try ignoredBitsMask(value, kind: target.kind, family: family, word: target.word)
                lastMaskable = nil
                continue
            }
            guard let field = fields[word] else {
                throw ValidationError(
                    "unknown word \"\(word.prefix(32))\"; expected one of \(fields.keys.sorted().joined(separator: ", ")), m")
            }
            guard arguments[field.key] == nil else { throw ValidationError("\(word) is given twice") }
            arguments[field.key] = try parse(value, kind: field.kind, family: family, word: word)
            if arguments[field.key] == "drop" {
                arguments[field.key] = nil
                guard arguments[.drop] == nil else { throw ValidationError("action is given twice") }
                arguments[.drop] = true
            }
            lastMaskable = field.mask.map { (word, $0, field.kind) }
        }
        guard arguments[.flowType] != nil else { throw ValidationError("give flow-type, e.g. flow-type udp4") }
        let targets = [Key.queue, .drop, .channel].filter { arguments[$0] != nil }
        guard targets.count == 1 else {
            throw ValidationError("give exactly one of action Q, action drop (or -1), channel C")
        }
        return arguments
    }

    private static func parse(_ text: String, kind: Kind, family: Int32, word: String) throws -> JSONValue {
        func bad(_ expected: String) -> ValidationError {
            ValidationError("\(word) \"\(text.prefix(48))\" is not \(expected)")
        }
        switch kind {
        case .flowType:
            guard flowTypes.contains(text) else { throw bad("one of \(flowTypes.joined(separator: ", "))") }
            return .string(text)
        case .address:
            guard addressBytes(text, family: family) != nil else {
                throw bad(family == AF_INET6 ? "an IPv6 address" : "an IPv4 address")
            }
            return .string(text)
        case .mac:
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 6, parts.allSatisfy({ (1...2).contains($0.count) && UInt8($0, radix: 16) != nil }) else {
                throw bad("a MAC address like 02:00:00:00:00:01")
            }
            return .string(text)
        case .port, .etherType, .vlan:
            guard let number = number(text, as: UInt16.self) else { throw bad("a number 0...65535") }
            return JSONValue(number)
        case .location:
            guard let number = number(text, as: UInt32.self) else { throw bad("a number 0...4294967295") }
            return JSONValue(number)
        case .queue:
            if text == "drop" || text == "-1" { return "drop" }
            guard let number = number(text, as: UInt32.self) else { throw bad("a queue number, -1 or drop") }
            return JSONValue(number)
        }
    }

    /// ethtool's `m` names the bits to ignore; the daemon wants the bits that
    /// must match: the same mask inverted.
    private static func ignoredBitsMask(_ text: String, kind: Kind, family: Int32, word: String) throws -> JSONValue {
        switch kind {
        case .address:
            guard let bytes = addressBytes(text, family: family) else {
                throw ValidationError("\(word) mask \"\(text.prefix(48))\" is not an IPv\(family == AF_INET6 ? 6 : 4) mask")
            }
            return .string(addressText(bytes.map { ~$0 }, family: family))
        case .port, .vlan:
            guard let number = number(text, as: UInt16.self) else {
                throw ValidationError("\(word) mask \"\(text.prefix(48))\" is not a number 0...0xffff")
            }
            return JSONValue(~number)
        default:
            throw ValidationError("\(word) takes no mask")
        }
    }

    /// Decimal or 0x-prefixed hex, as ethtool reads numbers; nil when out of range.
    static func number<T: FixedWidthInteger>(_ text: String, as type: T.Type) -> T? {
        guard text.utf8.count <= 24 else { return nil }
        if text.hasPrefix("0x") || text.hasPrefix("0X") { return T(text.dropFirst(2), radix: 16) }
        return T(text, radix: 10)
    }
}

func addressBytes(_ text: String, family: Int32) -> [UInt8]? {
    guard text.utf8.count <= 64 else { return nil }
    var bytes = [UInt8](repeating: 0, count: family == AF_INET6 ? 16 : 4)
    let parsed = bytes.withUnsafeMutableBytes { inet_pton(family, text, $0.baseAddress) }
    return parsed == 1 ? bytes : nil
}

func addressText(_ bytes: [UInt8], family: Int32) -> String {
    var buffer = [CChar](repeating: 0, count: 64)
    _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// ntuple rules (masks in the kernel's must-match sense) shown as
/// `ethtool -n` shows them.
enum RuleText {
    static func ruleTypeName(_ type: NtupleFlowType) -> String {
        switch type {
        case .tcp4: return "TCP over IPV4"
        case .udp4: return "UDP over IPV4"
        case .tcp6: return "TCP over IPV6"
        case .udp6: return "UDP over IPV6"
        case .ip4: return "Raw IPv4"
        case .ip6: return "Raw IPv6"
        case .ether: return "Raw Ethernet"
        }
    }

    static func family(_ rule: NtupleRule) -> Int32 { rule.flowType.rawValue.hasSuffix("6") ? AF_INET6 : AF_INET }

    /// ethtool shows ignored bits; a missing mask means every bit must match.
    static func ignoredAddressBits(_ mask: String?, family: Int32) -> String {
        let must = mask.flatMap { addressBytes($0, family: family) }
            ?? [UInt8](repeating: 0xFF, count: family == AF_INET6 ? 16 : 4)
        return addressText(must.map { ~$0 }, family: family)
    }

    static func ignoredBits(_ mask: UInt16?) -> String { "0x" + String(~(mask ?? 0xFFFF), radix: 16) }

    static func action(_ rule: NtupleRule) -> String {
        switch rule.action {
        case .drop: return "Drop"
        case .queue(let queue): return "Direct to queue \(queue)"
        }
    }

    /// The lines under "Filter: N" in `ethtool -n`, for the fields the rule sets.
    static func fields(_ rule: NtupleRule) -> [String] {
        let family = family(rule)
        var lines = ["Rule Type: \(ruleTypeName(rule.flowType))"]
        for (label, address, mask) in [("Src IP addr", rule.sourceAddress, rule.sourceAddressMask),
                                       ("Dest IP addr", rule.destinationAddress, rule.destinationAddressMask)] {
            if let address { lines.append("\(label): \(address) mask: \(ignoredAddressBits(mask, family: family))") }
        }
        for (label, port, mask) in [("Src port", rule.sourcePort, rule.sourcePortMask),
                                    ("Dest port", rule.destinationPort, rule.destinationPortMask)] {
            if let port { lines.append("\(label): \(port) mask: \(ignoredBits(mask))") }
        }
        for (label, mac) in [("Src MAC addr", rule.sourceMAC), ("Dest MAC addr", rule.destinationMAC)] {
            if let mac { lines.append("\(label): \(mac) mask: 00:00:00:00:00:00") }
        }
        if let type = rule.etherType { lines.append("Ethertype: 0x\(String(type, radix: 16)) mask: 0x0") }
        if let vlan = rule.vlan {
            lines.append("VLAN EtherType: 0x0 mask: 0xffff")
            lines.append("VLAN: 0x\(String(vlan, radix: 16)) mask: \(ignoredBits(rule.vlanMask))")
        }
        lines.append("Action: \(action(rule))")
        return lines
    }

    /// "udp4 dst-ip 10.0.0.1 dst-port 4242 -> queue 1", for one-line listings.
    /// What `steer add` prints: the rule, where it went and the ethtool line.
    static func added(_ result: SteeringResult, interface: InterfaceName) -> String {
        var lines = [result.dryRun ? "Dry run: nothing changed on \(interface). The rule would be:"
                                   : "Added on \(interface):"]
        lines.append("Filter: \(result.rule.location.map(String.init) ?? "chosen by the driver")")
        lines += fields(result.rule).map { "\t" + $0 }
        if let mapping = result.mapping {
            lines.append("Channel \(mapping.channel): steer queue \(mapping.steerQueue), "
                + "bind queue \(mapping.bindQueue), XSKMAP key \(mapping.xskmapKey)")
            if !mapping.message.isEmpty { lines.append("\t\(mapping.message)") }
        }
        lines.append("Equivalent ethtool command:")
        lines.append(text(result.ethtoolCommand))
        return lines.joined(separator: "\n")
    }
}
