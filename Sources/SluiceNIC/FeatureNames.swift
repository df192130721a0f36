/// Feature names as people type them: the kernel's (`rx-ntuple-filter`),
/// ethtool's long display names (`ntuple-filters`) and ethtool -K's short
/// names (`ntuple`, `gro`, `tso`, ...). Some aliases stand for a group of
/// kernel features (`tso` is every `tx-tcp*-segmentation`), as in ethtool.
public enum FeatureNames {
    struct Alias {
        var short: String
        var long: String
        /// Kernel names, `*` matching any run of characters.
        var pattern: String
    }

    // The table of ethtool's off_flag_def (ethtool.c), which is what both
    // `ethtool -k` prints and `ethtool -K` accepts.
    static let aliases: [Alias] = [
        Alias(short: "rx", long: "rx-checksumming", pattern: "rx-checksum"),
        Alias(short: "tx", long: "tx-checksumming", pattern: "tx-checksum-*"),
        Alias(short: "sg", long: "scatter-gather", pattern: "tx-scatter-gather*"),
        Alias(short: "tso", long: "tcp-segmentation-offload", pattern: "tx-tcp*-segmentation"),
        Alias(short: "ufo", long: "udp-fragmentation-offload", pattern: "tx-udp-fragmentation"),
        Alias(short: "gso", long: "generic-segmentation-offload", pattern: "tx-generic-segmentation"),
        Alias(short: "gro", long: "generic-receive-offload", pattern: "rx-gro"),
        Alias(short: "lro", long: "large-receive-offload", pattern: "rx-lro"),
        Alias(short: "rxvlan", long: "rx-vlan-offload", pattern: "rx-vlan-hw-parse"),
        Alias(short: "txvlan", long: "tx-vlan-offload", pattern: "tx-vlan-hw-insert"),
        Alias(short: "ntuple", long: "ntuple-filters", pattern: "rx-ntuple-filter"),
        Alias(short: "rxhash", long: "receive-hashing", pattern: "rx-hashing"),
    ]

    /// The kernel features `name` stands for on a device that has `available`.
    /// A kernel name wins over an alias of the same spelling.
    public static func resolve(_ name: String, available: [String], interface: String) throws -> [String] {
        if available.contains(name) { return [name] }
        let lowered = name.lowercased()
        if available.contains(lowered) { return [lowered] }
        if let alias = aliases.first(where: { $0.short == lowered || $0.long == lowered }) {
            let members = available.filter { glob(alias.pattern, matches: $0) }
            if !members.isEmpty { return members }
        }
        throw NICError.invalidArgument("unknown feature \(name) on \(interface)")
    }

    /// ethtool's display name for a kernel feature that an alias names on
    /// its own (`rx-ntuple-filter` → `ntuple-filters`), else the kernel name.
    public static func displayName(_ kernelName: String) -> String {
        aliases.first { !$0.pattern.contains("*") && $0.pattern == kernelName }?.long ?? kernelName
    }

    /// One `*` matches any run of characters; everything else literally.
    static func glob(_ pattern: String, matches text: String) -> Bool {
        guard let star = pattern.firstIndex(of: "*") else { return pattern == text }
        let prefix = pattern[..<star], suffix = pattern[pattern.index(after: star)...]
        return text.count >= prefix.count + suffix.count && text.hasPrefix(prefix) && text.hasSuffix(suffix)
    }
}
