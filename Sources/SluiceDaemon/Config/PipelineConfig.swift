import SluiceDataPath
import SluiceModules
import SluiceProtocol

extension SluiceConfig {
    /// `[pipeline]`: how packets travel from the AF_XDP sockets through the modules.
    public struct Pipeline: Equatable, Sendable {
        /// `pipelined` puts a slow module (pcap on a slow disk) on the worker
        /// thread, so it stalls the worker and not the RX ring.
        public var mode: ProcessingMode = .pipelined
        public var autostart = true
        public var batchSize = 64
        public var frameSize = 4096
        public var frames = 4096
        public var rxRing = 2048, txRing = 2048, fillRing = 4096, completionRing = 2048, handoffRing = 4096
        /// `[[pipeline.modules]]`, in the order packets pass through them.
        public var modules: [Module] = []

        public init() {}

        public static let batchSizeRange = 1...1024
        /// The UMEM chunk sizes AF_XDP accepts in aligned mode.
        public static let frameSizes = [2048, 4096]
        public static let framesRange = 64...262_144
        public static let xdpRingRange = 64...65536
        public static let handoffRingRange = 64...1_048_576
    }

    /// One `[[pipeline.modules]]` table: checked with
    /// the kind's `ModuleDescriptor`, built by the daemon.
    public struct Module: Equatable, Sendable {
        public var kind: ModuleKind
        /// Every key of the table but `kind`.
        public var options: [String: ModuleOptionValue]
        /// The line of the `[[pipeline.modules]]` header, for messages about
        /// the module at run time (nil when the config was not read from text).
        public var line: Int?

        public init(kind: ModuleKind, options: [String: ModuleOptionValue] = [:], line: Int? = nil) {
            self.kind = kind
            self.options = options
            self.line = line
        }

        /// Ignores `line`: a comment added above a module on reload does not
        /// make it a different module.
        public static func == (lhs: Module, rhs: Module) -> Bool {
            lhs.kind == rhs.kind && lhs.options == rhs.options
        }
    }

    /// One `[[interface]]` table: a NIC Sluice takes queues of.
    public struct Interface: Equatable, Sendable, ConfigSchemaRoot {
        /// As config spells it: the XDP program's classes, and icmpv6, which
        /// it counts as icmp.
        public enum PrefilterProtocol: String, CaseIterable, Sendable {
            case udp, tcp, icmp, icmpv6

            var transport: Prefilter.TransportProtocol {
                self == .icmpv6 ? .icmp : Prefilter.TransportProtocol(rawValue: rawValue)!
            }
        }

        public var name: String
        /// A driver plugin forced by name; nil = the plugin with the highest score.
        public var plugin: String?
        /// nil = every receive channel the interface has.
        public var channels: [UInt32]?
        public var bindMode: XSKBindMode = .auto
        public var attachMode: XDPAttachMode = .native
        /// The RX thread of the i-th channel runs on `rxCPUs[i % count]`; [] = not pinned.
        public var rxCPUs: [Int] = []
        public var workerCPUs: [Int] = []
        /// [] = every packet goes to Sluice; else only these, the rest to the kernel.
        public var prefilterProtocols: [PrefilterProtocol] = []
        /// Destination ports (udp/tcp only); [] = any port.
        public var prefilterPorts: [ClosedRange<UInt16>] = []
        /// Preferred busy polling of the sockets, and the device's NAPI
        /// settings that go with it (af_xdp.rst "Busy-polling": 20 µs,
        /// budget 64, napi_defer_hard_irqs 2, gro_flush_timeout 200000 ns).
        public var busyPoll = false
        public var busyPollMicroseconds = 20
        public var busyPollBudget = 64
        public var napiDeferHardIRQs = 2
        public var groFlushTimeoutNanoseconds = 200_000
        /// Whether the XDP program stores the driver's RX metadata for the modules.
        public var rxMetadata: RxMetadataMode = .auto

        /// `auto`: the device-bound XDP program with the metadata kfuncs
        /// where the kernel has them and XDP attaches natively, else the
        /// plain one (status says why); `off`: always the plain one.
        public enum RxMetadataMode: String, CaseIterable, Sendable {
            case auto, off
        }

        /// Packets larger than one UMEM frame as chains of frames (XDP multi-buffer).
        public var multiBuffer: MultiBufferMode = .auto

        public init(name: String) { self.name = name }

        public static var schemaDefaults: Interface { Interface(name: "") }

        /// SLUICE_PLUGIN_NAME_MAX in sluice/driver_plugin.h.
        public static let maximumPluginNameBytes = 31
        /// As many port ranges as the XDP program's prefilter holds.
        public static let maximumPrefilterPorts = Prefilter.maximumPortRanges
        public static let cpuRange = 0...1023
        public static let busyPollMicrosecondsRange = 1...1_000_000
        /// SO_BUSY_POLL_BUDGET above U16_MAX is EINVAL.
        public static let busyPollBudgetRange = 1...65535
        /// The kernel refuses napi_defer_hard_irqs above S32_MAX.
        public static let napiDeferHardIRQsRange = 0...Int(Int32.max)
        /// Up to one second: past that the deferred interrupt is a stall, not a watchdog.
        public static let groFlushTimeoutRange = 0...1_000_000_000

        /// Plugin names use the characters the plugin loader accepts.
        static func pluginNameProblem(_ name: String) -> String? {
            let bytes = name.utf8
            if bytes.count > maximumPluginNameBytes {
                return "plugin name \(ConfigText.quoted(name)) is \(bytes.count) bytes long;"
                    + " the limit is \(maximumPluginNameBytes)"
            }
            let allowed = bytes.allSatisfy { byte in
                TOMLPathComponent.isBareKeyByte(byte) || byte == UInt8(ascii: ".")
            }
            return allowed ? nil : "\(ConfigText.quoted(name)) is not a plugin name (letters, digits, '_', '-', '.')"
        }

        static func channel(_ value: TOMLValue) -> Result<UInt32, ConfigValueRejected> {
            guard let number = value.int else {
                return .failure(ConfigValueRejected(ConfigText.mismatch(expected: "integers", got: value)))
            }
            guard let channel = UInt32(exactly: number), channel <= 65535 else {
                return .failure(ConfigValueRejected("channel \(number) is out of range 0...65535"))
            }
            return .success(channel)
        }

        static func prefilterProtocol(_ value: TOMLValue) -> Result<PrefilterProtocol, ConfigValueRejected> {
            guard let text = value.string else {
                return .failure(ConfigValueRejected(ConfigText.mismatch(expected: "strings", got: value)))
            }
            guard let proto = PrefilterProtocol(rawValue: text) else {
                let names = PrefilterProtocol.allCases.map(\.rawValue).joined(separator: ", ")
                return .failure(ConfigValueRejected("\(ConfigText.quoted(text)) is not one of \(names)"))
            }
            return .success(proto)
        }

        /// A prefilter port: `53` or `"1000-2000"`.
        static func portRange(_ value: TOMLValue) -> Result<ClosedRange<UInt16>, ConfigValueRejected> {
            if let number = value.int {
                guard let port = UInt16(exactly: number) else {
                    return .failure(ConfigValueRejected("port \(number) is out of range 0...65535"))
                }
                return .success(port...port)
            }
            guard let text = value.string else {
                return .failure(ConfigValueRejected(
                    ConfigText.mismatch(expected: "port numbers or \"LOW-HIGH\" strings", got: value)))
            }
            let parts = text.utf8.split(separator: UInt8(ascii: "-"), omittingEmptySubsequences: false)
            func port(_ bytes: Substring.UTF8View) -> UInt16? {
                // Digits only, so " 80" and "+80" are refused rather than guessed at.
                guard (1...5).contains(bytes.count),
                      bytes.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
                else { return nil }
                return UInt16(String(decoding: bytes, as: UTF8.self))
            }
            guard parts.count == 2, let low = port(parts[0]), let high = port(parts[1]) else {
                return .failure(ConfigValueRejected(
                    "\(ConfigText.quoted(text)) is not a port range \"LOW-HIGH\" with ports 0...65535"))
            }
            guard low <= high else {
                return .failure(ConfigValueRejected("port range \(ConfigText.quoted(text)) ends before it starts"))
            }
            return .success(low...high)
        }

        static func describe(ports: ClosedRange<UInt16>) -> String {
            ports.lowerBound == ports.upperBound
                ? "port \(ports.lowerBound)" : "port range \(ports.lowerBound)-\(ports.upperBound)"
        }
    }
}
