#if canImport(Glibc)
import Glibc
#endif
import SluiceProtocol
import SluiceSystem
import SystemPackage

/// Writes the frames it sees to capture files that tcpdump and Wireshark
/// read, rotating by size: `path` is the newest file, `path.1` the one
/// before, up to `path.<max_files-1>`; older files are removed.
///
/// `format = "pcapng"` (the default): a section header, one interface
/// description (link type Ethernet, `if_tsresol` 9: nanoseconds) and an
/// enhanced packet block per frame, in host byte order. Each frame is
/// stamped with the driver's receive time where the XDP program stores it
/// (``RxMetadata``: PHC time, usually CLOCK_TAI, 37 s ahead of UTC), else
/// with the receive time (CLOCK_REALTIME, read once per batch).
/// `format = "pcap"`: classic pcap (magic 0xa1b2c3d4, microseconds), for
/// tools that read nothing else; the same stamps, cut to microseconds.
///
/// `rx_hash = "toeplitz"` (pcapng only) adds the driver's RX hash, where the
/// driver gave one, to the packet's block as the standard `epb_hash` option
/// with algorithm 5 (Toeplitz). Off by default: the metadata kfunc does not
/// say which function the NIC hashes with (veth's is the kernel's software
/// flow hash, some NICs are set to XOR or CRC32), and pcapng has no code for
/// "an RSS hash of unknown algorithm", so the operator, who can read it in
/// `ethtool -x` ("toeplitz: on"), says so.
///
/// Records are copied into a buffer allocated once, and the buffer is written
/// to the file when it fills, on rotation and on `flush()`. That file I/O
/// happens on the thread that runs the module, so put pcap in a `pipelined`
/// pipeline, where a slow disk stalls the worker and not the RX ring. One
/// clock read per batch stamps all its frames. Write errors are counted (and
/// the buffered records with them), never thrown on the data path.
///
/// Frames already decided by an earlier module are not written; malformed
/// frames are (that is often why one captures).
public final class PcapModule: PacketModule {
    public struct Options: Sendable, Equatable {
        /// Absolute path of the newest file.
        public var path: String
        /// Bytes of each frame kept; longer frames are cut (and counted).
        public var snaplen: Int
        /// Start a new file before one would grow past this; 0 = never rotate.
        public var maxBytes: Int
        /// Files kept, the current one included.
        public var maxFiles: Int
        /// Size of the write buffer.
        public var bufferBytes: Int
        public var format: Format
        /// Which algorithm the driver's RX hash is written as (`epb_hash`).
        public var rxHash: RxHash

        /// The file format.
        public enum Format: String, Sendable, CaseIterable {
            /// pcapng with nanosecond stamps, the driver's where there are.
            case pcapng
            /// Classic pcap, microsecond stamps.
            case pcap
        }

        /// Whether the driver's RX hash goes into pcapng's `epb_hash`, and
        /// as which of its algorithms.
        public enum RxHash: String, Sendable, CaseIterable {
            /// Not written.
            case off
            /// `epb_hash` algorithm 5: the NIC hashes with Toeplitz (RSS).
            case toeplitz

            /// The algorithm octet draft-ietf-opsawg-pcapng gives it.
            var algorithm: UInt8? { self == .toeplitz ? 5 : nil }
        }

        public init(
            path: String, snaplen: Int = 65535, maxBytes: Int = 0, maxFiles: Int = 10, bufferBytes: Int = 1 << 20,
            format: Format = .pcapng, rxHash: RxHash = .off
        ) {
            self.path = path
            self.snaplen = snaplen
            self.maxBytes = maxBytes
            self.maxFiles = maxFiles
            self.bufferBytes = bufferBytes
            self.format = format
            self.rxHash = rxHash
        }

        public static let snaplenRange: ClosedRange<Int64> = 64...262_144
        public static let maxBytesRange: ClosedRange<Int64> = 0...(1 << 40)
        public static let maxFilesRange: ClosedRange<Int64> = 1...10000
        public static let bufferBytesRange: ClosedRange<Int64> = 4096...(64 << 20)
        /// Smallest useful `max_bytes`: the file header and one record.
        public static let minimumMaxBytes = 1024

        static let options = [
            ModuleOption("path", .string, default: nil, "Absolute path of the newest capture file."),
            ModuleOption("snaplen", .integer, range: snaplenRange, default: "65535", "Bytes of each frame kept."),
            ModuleOption("max_bytes", .integer, range: maxBytesRange, default: "0",
                         "Rotate before a file grows past this; 0 = never rotate."),
            ModuleOption("max_files", .integer, range: maxFilesRange, default: "10", "Files kept, the current one included."),
            ModuleOption("buffer_bytes", .integer, range: bufferBytesRange, default: "\(1 << 20)", "Write buffer size."),
            ModuleOption("format", .string, choices: Format.allCases.map(\.rawValue), default: "\"pcapng\"",
                         "pcapng (ns stamps, the driver's where rx_metadata gives them) or pcap (classic, µs)."),
            ModuleOption("rx_hash", .string, choices: RxHash.allCases.map(\.rawValue), default: "\"off\"",
                         "toeplitz: the driver's RX hash in each pcapng block (epb_hash) where it gave one; "
                            + "only when `ethtool -x` shows the NIC hashes with Toeplitz."),
        ]

        init(_ reader: OptionReader) throws {
            let options = Self.options
            guard let path = try reader.string(options[0]) else {
                throw reader.error("path", "missing (absolute path of the capture file)")
            }
            self.init(path: path)
            if let value = try reader.integer(options[1]) { snaplen = Int(value) }
            if let value = try reader.integer(options[2]) { maxBytes = Int(value) }
            if let value = try reader.integer(options[3]) { maxFiles = Int(value) }
            if let value = try reader.integer(options[4]) { bufferBytes = Int(value) }
            if let value = try reader.string(options[5]) { format = Format(rawValue: value) ?? .pcapng }
            if let value = try reader.string(options[6]) { rxHash = RxHash(rawValue: value) ?? .off }
            if let problem = validationProblem() { throw reader.error(problem.option, problem.reason) }
        }

        /// The first inconsistency between options, if any.
        func validationProblem() -> (option: String, reason: String)? {
            if !path.hasPrefix("/") { return ("path", "'\(path)' is not an absolute path") }
            if path.utf8.count > Int(PATH_MAX) - 8 || path.utf8.contains(0) {
                return ("path", "path is too long or contains NUL")
            }
            if let problem = Directory.problem(creating: Directory.parent(of: path)) {
                return ("path", "the capture directory \(problem); \(Directory.fix)")
            }
            if !Self.snaplenRange.contains(Int64(snaplen)) { return ("snaplen", "\(snaplen) is out of range \(Self.snaplenRange)") }
            if maxBytes != 0 && maxBytes < Self.minimumMaxBytes {
                return ("max_bytes", "\(maxBytes) is below \(Self.minimumMaxBytes) (0 disables rotation)")
            }
            if !Self.maxFilesRange.contains(Int64(maxFiles)) { return ("max_files", "\(maxFiles) is out of range \(Self.maxFilesRange)") }
            if rxHash != .off && format != .pcapng {
                return ("rx_hash", "needs format = \"pcapng\" (classic pcap has no per-packet options)")
            }
            let largestRecord = PcapModule.recordSize(captured: snaplen, format, hashOption: rxHash != .off)
            if bufferBytes < largestRecord + PcapModule.fileHeaderSize(format)
                || bufferBytes > Int(Self.bufferBytesRange.upperBound)
            {
                return ("buffer_bytes", "\(bufferBytes) cannot hold one \(snaplen)-byte record plus headers")
            }
            return nil
        }
    }

    static let descriptor = ModuleDescriptor(
        kind: .pcap, summary: "Writes the frames it sees to rotating pcapng (or pcap) files (tcpdump, Wireshark).",
        options: Options.options, readsRxMetadata: true, parse: Options.init, make: PcapModule.init(options:))

    public let kind = ModuleKind.pcap.rawValue
    public let options: Options
    /// The file header: classic pcap's, or pcapng's section header and
    /// interface description blocks.
    static func fileHeaderSize(_ format: Options.Format) -> Int {
        format == .pcap ? 24 : sectionHeaderBlockSize + interfaceDescriptionBlockSize
    }

    static let sectionHeaderBlockSize = 28
    static let interfaceDescriptionBlockSize = 32

    /// One frame's record: classic pcap's 16-byte header and the bytes, or
    /// an enhanced packet block (28 bytes, the bytes padded to 4, with
    /// `hashOption` the epb_hash option and opt_endofopt, the trailing
    /// length).
    @inline(__always)
    static func recordSize(captured: Int, _ format: Options.Format, hashOption: Bool = false) -> Int {
        format == .pcap ? 16 + captured : 32 + ((captured + 3) & ~3) + (hashOption ? hashOptionSize : 0)
    }

    /// epb_hash (code 3, length 5: the algorithm octet and 4 hash bytes,
    /// padded to 8) and opt_endofopt (4).
    static let hashOptionSize = 16

    // Data-path state: touched only by the thread running the module.
    private var descriptor: Int32 = -1
    private let buffer: UnsafeMutableRawPointer
    private var buffered = 0
    private var bufferedRecords: UInt64 = 0
    /// Bytes already written to the current file.
    private var fileBytes = 0
    /// Whether the current file (written or buffered) has a record yet.
    private var fileHasRecord = false

    private enum Counter: Int, CaseIterable {
        case packets, bytes, truncated, files, rotations, writeErrors, lostPackets, driverTimestamps
        var name: String {
            switch self {
            case .driverTimestamps: return "driver_timestamps"
            case .packets: return "packets"
            case .bytes: return "bytes"
            case .truncated: return "truncated"
            case .files: return "files"
            case .rotations: return "rotations"
            case .writeErrors: return "write_errors"
            case .lostPackets: return "lost_packets"
            }
        }
    }
    private let counters: CounterArray

    /// Opens (truncating) `options.path`; throws if the options are
    /// inconsistent or the file cannot be created.
    public init(options: Options) throws {
        if let problem = options.validationProblem() {
            throw ModuleConfigurationError(kind: .pcap, option: problem.option, reason: problem.reason)
        }
        // Open before allocating anything, so a failure leaks nothing.
        let fd: Int32
        let directory = Directory.parent(of: options.path)
        do {
            // Captures hold other people's traffic: a directory made here is 0750.
            try Directory.create(directory, mode: 0o750)
        } catch let error as SystemCallError {
            throw ModuleConfigurationError(
                kind: .pcap, option: "path",
                reason: "cannot create the capture directory '\(directory)': \(error)")
        }
        do {
            fd = try Self.create(options.path)
        } catch let error as SystemCallError {
            throw ModuleConfigurationError(
                kind: .pcap, option: "path",
                reason: "cannot create '\(options.path)': \(error.errno.description) (errno \(error.errno.rawValue))")
        }
        self.options = options
        buffer = .allocate(byteCount: options.bufferBytes, alignment: 16)
        counters = CounterArray(count: Counter.allCases.count)
        start(fd)
    }

    deinit {
        writeBuffer()
        if descriptor >= 0 { close(descriptor) }
        buffer.deallocate()
        counters.deallocate()
    }

    /// The driver's receive stamps, where the XDP program stores them.
    public var wantsRxMetadata: Bool { true }

    public func process(_ batch: PacketBatch) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let receivedAt = UInt64(truncatingIfNeeded: now.tv_sec) &* 1_000_000_000 &+ UInt64(truncatingIfNeeded: now.tv_nsec)
        let format = options.format
        let hashAlgorithm = options.rxHash.algorithm
        var packets: UInt64 = 0, bytes: UInt64 = 0, truncated: UInt64 = 0, driverStamped: UInt64 = 0
        for index in 0..<batch.count {
            let packet = batch.descriptors[index]
            guard packet.verdict == .pass else { continue }
            let length = Int(packet.length)
            let captured = min(length, options.snaplen)
            let metadata = batch.rxMetadata(at: index)
            let hashOption = hashAlgorithm != nil && metadata.hasHash
            let recordSize = Self.recordSize(captured: captured, format, hashOption: hashOption)
            if options.maxBytes > 0 && fileHasRecord && fileBytes + buffered + recordSize > options.maxBytes {
                rotate()
            }
            if buffered + recordSize > options.bufferBytes { writeBuffer() }
            let stamp = metadata.hasTimestamp ? metadata.timestamp : receivedAt
            let record = buffer + buffered
            let header = Self.storeRecordHeader(
                record, format: format, nanoseconds: stamp, captured: captured, length: length, recordSize: recordSize)
            if hashOption, let hashAlgorithm {
                Self.storeHashOption(record, captured: captured, algorithm: hashAlgorithm, hash: metadata.hash)
            }
            writeFrameBytes(batch, index, to: record + header, count: captured)
            buffered += recordSize
            bufferedRecords &+= 1
            fileHasRecord = true
            packets &+= 1
            bytes &+= UInt64(captured)
            truncated &+= captured < length ? 1 : 0
            driverStamped &+= metadata.hasTimestamp ? 1 : 0
        }
        counters.add(Counter.packets.rawValue, packets)
        counters.add(Counter.bytes.rawValue, bytes)
        counters.add(Counter.truncated.rawValue, truncated)
        counters.add(Counter.driverTimestamps.rawValue, driverStamped)
    }

    /// Copies the first `count` bytes of the packet to the record.
    @inline(__always)
    private func writeFrameBytes(_ batch: PacketBatch, _ index: Int, to destination: UnsafeMutableRawPointer, count: Int) {
        let packet = batch.descriptors[index]
        if packet.isMultiBuffer {
            Self.copyChain(batch, index, to: destination, byteCount: count)
        } else {
            destination.copyMemory(from: batch.umem + Int(truncatingIfNeeded: packet.address), byteCount: count)
        }
    }

    /// Writes a record's header (and, pcapng, its padding and trailing
    /// length) around the `captured` frame bytes that follow it; returns the
    /// header's size, where the frame bytes go.
    @inline(__always)
    static func storeRecordHeader(
        _ record: UnsafeMutableRawPointer, format: Options.Format, nanoseconds: UInt64, captured: Int, length: Int,
        recordSize: Int
    ) -> Int {
        switch format {
        case .pcap:
            record.storeBytes(of: UInt32(truncatingIfNeeded: nanoseconds / 1_000_000_000), toByteOffset: 0, as: UInt32.self)
            record.storeBytes(of: UInt32(truncatingIfNeeded: nanoseconds % 1_000_000_000 / 1000), toByteOffset: 4, as: UInt32.self)
            record.storeBytes(of: UInt32(truncatingIfNeeded: captured), toByteOffset: 8, as: UInt32.self)
            record.storeBytes(of: UInt32(truncatingIfNeeded: length), toByteOffset: 12, as: UInt32.self)
            return 16
        case .pcapng:
            // Enhanced packet block: type, total length, interface 0, the
            // stamp (units of if_tsresol) high word first, lengths.
            record.storeBytes(of: UInt32(6), toByteOffset: 0, as: UInt32.self)
            record.storeBytes(of: UInt32(truncatingIfNeeded: recordSize), toByteOffset: 4, as: UInt32.self)
            record.storeBytes(of: UInt32(0), toByteOffset: 8, as: UInt32.self)
            record.storeBytes(of: UInt32(truncatingIfNeeded: nanoseconds >> 32), toByteOffset: 12, as: UInt32.self)
            record.storeBytes(of: UInt32(truncatingIfNeeded: nanoseconds), toByteOffset: 16, as: UInt32.self)
            record.storeBytes(of: UInt32(truncatingIfNeeded: captured), toByteOffset: 20, as: UInt32.self)
            record.storeBytes(of: UInt32(truncatingIfNeeded: length), toByteOffset: 24, as: UInt32.self)
            // Zero the padding (the frame's last word covers it; the frame
            // bytes overwrite its start), then the trailing length.
            let framesEnd = 28 + ((captured + 3) & ~3)
            if framesEnd > 28 { record.storeBytes(of: UInt32(0), toByteOffset: framesEnd - 4, as: UInt32.self) }
            record.storeBytes(of: UInt32(truncatingIfNeeded: recordSize), toByteOffset: recordSize - 4, as: UInt32.self)
            return 28
        }
    }

    /// Writes the options of an enhanced packet block whose record has
    /// room for them (``hashOptionSize``), after its padded frame bytes:
    /// epb_hash (code 3, length 5) holding the algorithm octet and the hash
    /// in the section's byte order, 3 zero bytes of padding, opt_endofopt.
    @inline(__always)
    static func storeHashOption(_ record: UnsafeMutableRawPointer, captured: Int, algorithm: UInt8, hash: UInt32) {
        let option = record + 28 + ((captured + 3) & ~3)
        option.storeBytes(of: UInt16(3), toByteOffset: 0, as: UInt16.self)
        option.storeBytes(of: UInt16(5), toByteOffset: 2, as: UInt16.self)
        option.storeBytes(of: UInt32(0), toByteOffset: 8, as: UInt32.self)  // the padding; the hash overwrites its first byte
        option.storeBytes(of: algorithm, toByteOffset: 4, as: UInt8.self)
        option.storeBytes(of: hash, toByteOffset: 5, as: UInt32.self)
        option.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)  // opt_endofopt
    }

    /// The first `byteCount` bytes of a multi-buffer packet, segment after
    /// segment; zeros where its segments hold fewer (they never do).
    private static func copyChain(_ batch: PacketBatch, _ index: Int, to destination: UnsafeMutableRawPointer, byteCount: Int) {
        var copied = 0
        for segment in 0..<batch.segmentCount(at: index) where copied < byteCount {
            let bytes = batch.segment(segment, of: index)
            let take = min(bytes.count, byteCount - copied)
            (destination + copied).copyMemory(from: UnsafeRawPointer(bytes.baseAddress!), byteCount: take)
            copied += take
        }
        (destination + copied).initializeMemory(as: UInt8.self, repeating: 0, count: byteCount - copied)
    }

    /// Writes what is buffered. Called when the pipeline stops.
    public func flush() {
        writeBuffer()
    }

    private func writeBuffer() {
        guard buffered > 0 else { return }
        defer {
            buffered = 0
            bufferedRecords = 0
        }
        guard descriptor >= 0 else {
            counters.add(Counter.lostPackets.rawValue, bufferedRecords)
            return
        }
        var written = 0
        while written < buffered {
            let result = Glibc.write(descriptor, buffer + written, buffered - written)
            if result > 0 {
                written += result
            } else if result < 0 && errno == EINTR {
                continue
            } else {
                // ENOSPC, EIO, …: the records in the buffer are gone; the
                // file may end in a partial record, so start a fresh one.
                counters.add(Counter.writeErrors.rawValue, 1)
                counters.add(Counter.lostPackets.rawValue, bufferedRecords)
                fileBytes += written
                close(descriptor)
                descriptor = -1
                return
            }
        }
        fileBytes += written
    }

    /// Closes the current file, shifts `path.N` to `path.N+1` (dropping the
    /// oldest) and starts a new `path`.
    private func rotate() {
        writeBuffer()
        if descriptor >= 0 {
            close(descriptor)
            descriptor = -1
        }
        let path = options.path
        if options.maxFiles > 1 {
            for generation in stride(from: options.maxFiles - 1, to: 0, by: -1) {
                let from = generation == 1 ? path : "\(path).\(generation - 1)"
                if Glibc.rename(from, "\(path).\(generation)") != 0 && errno != ENOENT {
                    counters.add(Counter.writeErrors.rawValue, 1)
                }
            }
        }
        counters.add(Counter.rotations.rawValue, 1)
        if let fd = try? Self.create(path) {
            start(fd)
        } else {
            counters.add(Counter.writeErrors.rawValue, 1)
        }
    }

    /// Creates (truncates) a capture file.
    private static func create(_ path: String) throws -> Int32 {
        try retryingEINTR("open \(path)") {
            open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        }
    }

    /// Makes `fd` the current file and buffers its header.
    private func start(_ fd: Int32) {
        descriptor = fd
        fileBytes = 0
        fileHasRecord = false
        buffered = Self.storeFileHeader(buffer, format: options.format, snaplen: options.snaplen)
        bufferedRecords = 0
        counters.add(Counter.files.rawValue, 1)
    }

    /// Writes the file header; returns its size.
    static func storeFileHeader(_ buffer: UnsafeMutableRawPointer, format: Options.Format, snaplen: Int) -> Int {
        switch format {
        case .pcap:
            buffer.storeBytes(of: UInt32(0xA1B2_C3D4), toByteOffset: 0, as: UInt32.self)
            buffer.storeBytes(of: UInt16(2), toByteOffset: 4, as: UInt16.self)  // version 2.4
            buffer.storeBytes(of: UInt16(4), toByteOffset: 6, as: UInt16.self)
            buffer.storeBytes(of: Int32(0), toByteOffset: 8, as: Int32.self)  // thiszone: UTC
            buffer.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)  // sigfigs
            buffer.storeBytes(of: UInt32(snaplen), toByteOffset: 16, as: UInt32.self)
            buffer.storeBytes(of: UInt32(1), toByteOffset: 20, as: UInt32.self)  // LINKTYPE_ETHERNET
        case .pcapng:
            // Section header block: the byte-order magic tells readers the
            // file's byte order; version 1.0; section length -1 (unknown).
            let section = sectionHeaderBlockSize
            buffer.storeBytes(of: UInt32(0x0A0D_0D0A), toByteOffset: 0, as: UInt32.self)
            buffer.storeBytes(of: UInt32(section), toByteOffset: 4, as: UInt32.self)
            buffer.storeBytes(of: UInt32(0x1A2B_3C4D), toByteOffset: 8, as: UInt32.self)
            buffer.storeBytes(of: UInt16(1), toByteOffset: 12, as: UInt16.self)
            buffer.storeBytes(of: UInt16(0), toByteOffset: 14, as: UInt16.self)
            buffer.storeBytes(of: Int64(-1), toByteOffset: 16, as: Int64.self)
            buffer.storeBytes(of: UInt32(section), toByteOffset: 24, as: UInt32.self)
            // Interface description block: Ethernet, snaplen, and the option
            // if_tsresol (9) = 9, stamps in nanoseconds, then opt_endofopt.
            let interface = buffer + section, size = interfaceDescriptionBlockSize
            interface.storeBytes(of: UInt32(1), toByteOffset: 0, as: UInt32.self)
            interface.storeBytes(of: UInt32(size), toByteOffset: 4, as: UInt32.self)
            interface.storeBytes(of: UInt16(1), toByteOffset: 8, as: UInt16.self)  // LINKTYPE_ETHERNET
            interface.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
            interface.storeBytes(of: UInt32(snaplen), toByteOffset: 12, as: UInt32.self)
            interface.storeBytes(of: UInt16(9), toByteOffset: 16, as: UInt16.self)  // if_tsresol
            interface.storeBytes(of: UInt16(1), toByteOffset: 18, as: UInt16.self)
            interface.storeBytes(of: UInt32(0), toByteOffset: 20, as: UInt32.self)  // 3 bytes padding after:
            interface.storeBytes(of: UInt8(9), toByteOffset: 20, as: UInt8.self)  // 10^-9 s
            interface.storeBytes(of: UInt32(0), toByteOffset: 24, as: UInt32.self)  // opt_endofopt
            interface.storeBytes(of: UInt32(size), toByteOffset: 28, as: UInt32.self)
        }
        return fileHeaderSize(format)
    }

    /// Counters, and one row with the current `path`.
    public func snapshot() -> ModuleSnapshot {
        var values: [String: UInt64] = [:]
        for counter in Counter.allCases { values[counter.name] = counters.load(counter.rawValue) }
        return ModuleSnapshot(kind: kind, counters: values, rows: [["path": options.path]])
    }
}
