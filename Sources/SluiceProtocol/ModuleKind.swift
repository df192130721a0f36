/// The packet-processing modules a pipeline can run. The raw values are what
/// config files and the control protocol carry.
public enum ModuleKind: String, Codable, Sendable, CaseIterable, CustomStringConvertible {
    case count, filter, pcap, reflect, latency

    public var description: String { rawValue }
}
