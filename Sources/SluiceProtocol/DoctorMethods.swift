extension Methods {
    public enum Doctor: ControlMethod {
        public static let name = "doctor"
        public static let level = AccessLevel.read
        public static let summary = "Why a bound queue sees no packets: queue counters vs sockets, steering, XDP program, zero-copy, prefilter, xdp tracepoint errors, outside changes"
        public static let arguments = [
            ArgumentSpec(Request.CodingKeys.iface, .string, "only this interface"),
            ArgumentSpec(Request.CodingKeys.sampleMilliseconds, Int.self, in: 0...10_000,
                         "how long to watch the xdp tracepoints (0...10000, default 1000)"),
        ]

        public struct Request: Codable, Sendable, Equatable {
            public var iface: InterfaceName?
            public var sampleMilliseconds: Int?

            public init(iface: InterfaceName? = nil, sampleMilliseconds: Int? = nil) {
                self.iface = iface; self.sampleMilliseconds = sampleMilliseconds
            }

            public enum CodingKeys: String, CodingKey { case iface, sampleMilliseconds = "sample_ms" }
        }

        public struct Response: Codable, Sendable, Equatable {
            public var findings: [DoctorFinding]
            public var warnings: Int
            public var errors: Int
            /// Every optional kernel feature, found or not, with what Sluice does without it.
            public var kernelFeatures: [KernelFeatureReport]

            public init(findings: [DoctorFinding], kernelFeatures: [KernelFeatureReport]) {
                self.findings = findings
                self.kernelFeatures = kernelFeatures
                warnings = findings.filter { $0.severity == .warning }.count
                errors = findings.filter { $0.severity == .error }.count
            }

            enum CodingKeys: String, CodingKey { case findings, warnings, errors, kernelFeatures = "kernel_features" }
        }
    }
}

/// One thing `doctor` found: how bad, what, the numbers behind it, and the
/// command that fixes it.
public struct DoctorFinding: Codable, Equatable, Sendable {
    public enum Severity: String, Codable, Comparable, Sendable, CaseIterable {
        case ok, info, warning, error

        private var rank: Int { Self.allCases.firstIndex(of: self)! }
        public static func < (lhs: Severity, rhs: Severity) -> Bool { lhs.rank < rhs.rank }
    }

    public var severity: Severity
    public var interface: String
    /// The rx queue the finding is about, if one.
    public var queue: UInt32?
    public var title: String
    public var evidence: [String]
    /// A concrete command (or config edit and command); nil when nothing needs fixing.
    public var fix: String?

    public init(severity: Severity, interface: String, queue: UInt32?, title: String, evidence: [String], fix: String?) {
        self.severity = severity; self.interface = interface; self.queue = queue; self.title = title
        self.evidence = evidence; self.fix = fix
    }

    enum CodingKeys: String, CodingKey { case severity, interface, queue, title, evidence, fix }
}

/// An optional kernel feature as `doctor` reports it: whether this kernel
/// has it, and what Sluice does without it.
public struct KernelFeatureReport: Codable, Equatable, Sendable {
    public enum State: String, Codable, Sendable {
        /// The probe saw the feature work (or the kernel describe it).
        case found
        /// The probe ran and the kernel has no such feature, or refuses it.
        case missing
        /// The probe could not run (no BTF, no permission): `detail` says why.
        case unknown
    }

    /// A stable snake_case id, e.g. `xdp_live_frames`.
    public var name: String
    public var title: String
    /// The upstream release that brought it.
    public var since: String
    public var state: State
    public var detail: String
    public var without: String

    public init(name: String, title: String, since: String, state: State, detail: String, without: String) {
        self.name = name; self.title = title; self.since = since; self.state = state; self.detail = detail
        self.without = without
    }

    enum CodingKeys: String, CodingKey { case name, title, since, state, detail, without }
}

/// One `trace` stream event: an `xdp:*` tracepoint hit, or `lost` with the
/// `count` of events the stream could not keep up with.
public struct TraceEvent: Codable, Equatable, Sendable {
    public var event: String
    public var ifindex: UInt32?
    /// Filled in by the daemon from the interfaces Sluice owns.
    public var iface: String?
    public var action: String?
    public var progID: UInt32?
    public var err: Int32?
    public var toIfindex: UInt32?
    public var mapID: UInt32?
    public var mapIndex: UInt32?
    /// Seconds since boot, as tracefs stamps it.
    public var timestamp: Double?
    /// The tracefs line; absent on `lost`.
    public var raw: String?
    /// Events lost, on `lost` only.
    public var count: UInt64?

    public init(event: String, timestamp: Double? = nil, raw: String? = nil, count: UInt64? = nil) {
        self.event = event; self.timestamp = timestamp; self.raw = raw; self.count = count
    }

    enum CodingKeys: String, CodingKey {
        case event, ifindex, iface, action, err, timestamp, raw, count
        case progID = "prog_id", toIfindex = "to_ifindex", mapID = "map_id", mapIndex = "map_index"
    }
}
