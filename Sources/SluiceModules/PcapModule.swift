#if canImport(Glibc)
import Glibc
#endif
import SluiceProtocol
import SluiceSystem
import SystemPackage

/// Writes the frames it sees to classic pcap files (microsecond timestamps,
/// magic 0xa1b2c3d4 in host order, link type Ethernet) that tcpdump and
/// Wireshark read, rotating by size: `path` is the newest file, `path.1` the
/// one before, up to `path.<max_files-1>`; older files are removed.
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

        public init(path: String, snaplen: Int = 65535, maxBytes: Int = 0, maxFiles: Int = 10, bufferBytes: Int = 1 << 20) {
            self.path = path
            self.snaplen = snaplen
            self.maxBytes = maxBytes
            self.maxFiles = maxFiles
            self.bufferBytes = bufferBytes
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
            if bufferBytes < PcapModule.recordHeaderSize + snaplen + PcapModule.fileHeaderSize
                || bufferBytes > Int(Self.bufferBytesRange.upperBound)
            {
                return ("buffer_bytes", "\(bufferBytes) cannot hold one \(snaplen)-byte record plus headers")
            }
            return nil
        }
    }

    static let descriptor = ModuleDescriptor(
        kind: .pcap, summary: "Writes the frames it sees to rotating pcap files (tcpdump, Wireshark).",
        options: Options.options, parse: Options.init, make: PcapModule.init(options:))

    public let kind = ModuleKind.pcap.rawValue
    public let options: Options
    static let fileHeaderSize = 24
    static let recordHeaderSize = 16

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
        case packets, bytes, truncated, files, rotations, writeErrors, lostPackets
        var name: String {
            switch self {
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

    public func process(_ batch: PacketBatch) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let seconds = UInt32(truncatingIfNeeded: now.tv_sec)
        let microseconds = UInt32(truncatingIfNeeded: now.tv_nsec / 1000)
        var packets: UInt64 = 0, bytes: UInt64 = 0, truncated: UInt64 = 0
        for index in 0..<batch.count {
            let packet = batch.descriptors[index]
            guard packet.verdict == .pass else { continue }
            let length = Int(packet.length)
            let captured = min(length, options.snaplen)
            let recordSize = Self.recordHeaderSize + captured
            if options.maxBytes > 0 && fileHasRecord && fileBytes + buffered + recordSize > options.maxBytes {
                rotate()
            }
            if buffered + recordSize > options.bufferBytes { writeBuffer() }
            let record = buffer + buffered
            record.storeBytes(of: seconds, toByteOffset: 0, as: UInt32.self)
            record.storeBytes(of: microseconds, toByteOffset: 4, as: UInt32.self)
            record.storeBytes(of: UInt32(truncatingIfNeeded: captured), toByteOffset: 8, as: UInt32.self)
            record.storeBytes(of: UInt32(truncatingIfNeeded: length), toByteOffset: 12, as: UInt32.self)
            if packet.isMultiBuffer {
                Self.copyChain(batch, index, to: record + Self.recordHeaderSize, byteCount: captured)
            } else {
                (record + Self.recordHeaderSize).copyMemory(
                    from: batch.umem + Int(truncatingIfNeeded: packet.address), byteCount: captured)
            }
            buffered += recordSize
            bufferedRecords &+= 1
            fileHasRecord = true
            packets &+= 1
            bytes &+= UInt64(captured)
            truncated &+= captured < length ? 1 : 0
        }
        counters.add(Counter.packets.rawValue, packets)
        counters.add(Counter.bytes.rawValue, bytes)
        counters.add(Counter.truncated.rawValue, truncated)
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
        buffer.storeBytes(of: UInt32(0xA1B2_C3D4), toByteOffset: 0, as: UInt32.self)
        buffer.storeBytes(of: UInt16(2), toByteOffset: 4, as: UInt16.self)  // version 2.4
        buffer.storeBytes(of: UInt16(4), toByteOffset: 6, as: UInt16.self)
        buffer.storeBytes(of: Int32(0), toByteOffset: 8, as: Int32.self)  // thiszone: UTC
        buffer.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)  // sigfigs
        buffer.storeBytes(of: UInt32(options.snaplen), toByteOffset: 16, as: UInt32.self)
        buffer.storeBytes(of: UInt32(1), toByteOffset: 20, as: UInt32.self)  // LINKTYPE_ETHERNET
        buffered = Self.fileHeaderSize
        bufferedRecords = 0
        counters.add(Counter.files.rawValue, 1)
    }

    /// Counters, and one row with the current `path`.
    public func snapshot() -> ModuleSnapshot {
        var values: [String: UInt64] = [:]
        for counter in Counter.allCases { values[counter.name] = counters.load(counter.rawValue) }
        return ModuleSnapshot(kind: kind, counters: values, rows: [["path": options.path]])
    }
}
