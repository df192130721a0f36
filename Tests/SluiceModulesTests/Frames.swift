import Glibc
import SluiceModules
import XCTest

/// Hand-built frames: each layer appends its bytes, lengths and checksums
/// are filled in when the frame is finished.
struct FrameBuilder {
    static let macA: [UInt8] = [0x02, 0, 0, 0, 0, 0x0A]
    static let macB: [UInt8] = [0x02, 0, 0, 0, 0, 0x0B]

    enum Network {
        case ipv4(source: [UInt8], destination: [UInt8], options: [UInt8] = [], fragmentField: UInt16 = 0x4000)
        /// `extensions`: (next-header value of the extension, its bytes without the next-header byte).
        case ipv6(source: [UInt8], destination: [UInt8], extensions: [(UInt8, [UInt8])] = [])
    }

    enum Transport {
        case udp(source: UInt16, destination: UInt16)
        case tcp(source: UInt16, destination: UInt16, options: [UInt8] = [])
        case icmp(type: UInt8)
        case raw(proto: UInt8, [UInt8])
    }

    var tags: [(tpid: UInt16, vlan: UInt16)] = []
    var network: Network
    var transport: Transport
    var payload: [UInt8] = Array("sluice".utf8)

    static func ipv4(_ source: String = "10.0.0.1", _ destination: String = "10.0.0.2") -> Network {
        .ipv4(source: v4(source), destination: v4(destination))
    }

    static func ipv6(_ source: String = "fd00::1", _ destination: String = "fd00::2") -> Network {
        .ipv6(source: v6(source), destination: v6(destination))
    }

    static func v4(_ text: String) -> [UInt8] { text.split(separator: ".").map { UInt8($0)! } }

    static func v6(_ text: String) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 16)
        precondition(inet_pton(AF_INET6, text, &bytes) == 1)
        return bytes
    }

    var transportProtocol: UInt8 {
        switch transport {
        case .udp: return 17
        case .tcp: return 6
        case .icmp: return isIPv6 ? 58 : 1
        case .raw(let proto, _): return proto
        }
    }

    var isIPv6: Bool { if case .ipv6 = network { return true } else { return false } }

    func transportBytes() -> [UInt8] {
        switch transport {
        case .udp(let source, let destination):
            let length = 8 + payload.count
            return be16(source) + be16(destination) + be16(UInt16(length)) + [0, 0] + payload
        case .tcp(let source, let destination, let options):
            precondition(options.count % 4 == 0)
            let offset = UInt8((20 + options.count) / 4) << 4
            return be16(source) + be16(destination) + [0, 0, 0, 1, 0, 0, 0, 0, offset, 0x18, 0xFF, 0xFF, 0, 0, 0, 0]
                + options + payload
        case .icmp(let type):
            return [type, 0, 0, 0, 0, 1, 0, 1] + payload
        case .raw(_, let bytes):
            return bytes
        }
    }

    /// The finished frame with valid IPv4, UDP and TCP checksums.
    func build() -> [UInt8] {
        var frame = Self.macB + Self.macA
        for tag in tags { frame += be16(tag.tpid) + be16(tag.vlan) }
        var l4 = transportBytes()
        switch network {
        case .ipv4(let source, let destination, let options, let fragmentField):
            precondition(options.count % 4 == 0)
            let headerLength = 20 + options.count
            var header: [UInt8] = [0x40 | UInt8(headerLength / 4), 0]
            header += be16(UInt16(headerLength + l4.count)) + [0x12, 0x34] + be16(fragmentField)
            header += [64, transportProtocol, 0, 0] + source + destination + options
            let sum = checksum(header)
            header[10] = UInt8(sum >> 8)
            header[11] = UInt8(sum & 0xFF)
            fillTransportChecksum(&l4, pseudo: source + destination + [0, transportProtocol] + be16(UInt16(l4.count)))
            frame += be16(0x0800) + header + l4
        case .ipv6(let source, let destination, let extensions):
            var chain: [UInt8] = []
            for (index, ext) in extensions.enumerated() {
                let next = index + 1 < extensions.count ? extensions[index + 1].0 : transportProtocol
                chain += [next] + ext.1
            }
            let first = extensions.first?.0 ?? transportProtocol
            fillTransportChecksum(
                &l4, pseudo: source + destination + be32(UInt32(l4.count)) + [0, 0, 0, transportProtocol])
            let header: [UInt8] = [0x60, 0, 0, 0] + be16(UInt16(chain.count + l4.count)) + [first, 64]
                + source + destination
            frame += be16(0x86DD) + header + chain + l4
        }
        return frame
    }

    func fillTransportChecksum(_ l4: inout [UInt8], pseudo: [UInt8]) {
        let at: Int
        switch transport {
        case .udp: at = 6
        case .tcp: at = 16
        default: return
        }
        let sum = checksum(pseudo + l4)
        l4[at] = UInt8(sum >> 8)
        l4[at + 1] = UInt8(sum & 0xFF)
    }
}

func be16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }
func be32(_ value: UInt32) -> [UInt8] { be16(UInt16(value >> 16)) + be16(UInt16(value & 0xFFFF)) }

/// The Internet checksum (RFC 1071) of `bytes`; a buffer whose checksum
/// field is right sums to 0.
func checksum(_ bytes: [UInt8]) -> UInt16 {
    var sum: UInt32 = 0
    var index = 0
    while index + 1 < bytes.count {
        sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
        index += 2
    }
    if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
    while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
    return ~UInt16(sum)
}

/// Memory whose last readable byte is followed by an inaccessible page, so
/// a parser that reads one byte past a frame placed at the end faults
/// instead of silently reading garbage.
final class GuardedMemory {
    let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
    let base: UnsafeMutableRawPointer
    let usable: Int

    init(pages: Int = 16) {
        usable = pages * pageSize
        let mapping = mmap(nil, usable + pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        precondition(mapping != MAP_FAILED)
        base = mapping!
        precondition(mprotect(base + usable, pageSize, PROT_NONE) == 0)
    }

    deinit { munmap(base, usable + pageSize) }

    /// Copies `bytes[0..<length]` so that it ends right at the guard page and parses it.
    func parse(_ bytes: [UInt8], length: Int? = nil) -> PacketHeaders {
        let length = length ?? bytes.count
        precondition(length <= usable && length <= bytes.count)
        let start = base + usable - length
        if length > 0 { bytes.withUnsafeBytes { start.copyMemory(from: $0.baseAddress!, byteCount: length) } }
        return HeaderParser.parse(frame: UnsafeRawPointer(start), length: length)
    }
}

/// A heap buffer acting as the UMEM, with descriptor and header arrays, as
/// the data path provides them.
final class TestUMEM {
    static let frameSize = 2048
    let frames: Int
    let umem: UnsafeMutableRawPointer
    let descriptors: UnsafeMutablePointer<PacketDescriptor>
    let headers: UnsafeMutablePointer<PacketHeaders>
    private(set) var count = 0

    init(frames: Int = 64) {
        self.frames = frames
        umem = .allocate(byteCount: frames * Self.frameSize, alignment: 4096)
        descriptors = .allocate(capacity: frames)
        headers = .allocate(capacity: frames)
        headers.initialize(repeating: PacketHeaders(), count: frames)
    }

    deinit {
        umem.deallocate()
        descriptors.deallocate()
        headers.deallocate()
    }

    func reset() { count = 0 }

    /// Puts `frame` into the next slot (queue `queue`) and returns its index.
    @discardableResult
    func add(_ frame: [UInt8], queue: UInt16 = 0) -> Int {
        precondition(count < frames && frame.count <= Self.frameSize)
        let address = count * Self.frameSize
        if !frame.isEmpty { frame.withUnsafeBytes { (umem + address).copyMemory(from: $0.baseAddress!, byteCount: frame.count) } }
        descriptors[count] = PacketDescriptor(address: UInt64(address), length: UInt32(frame.count), queue: queue)
        count += 1
        return count - 1
    }

    /// A batch of everything added, parsed.
    func parsedBatch() -> PacketBatch {
        let batch = PacketBatch(umem: umem, descriptors: descriptors, headers: headers, count: count)
        HeaderParser.parse(batch)
        return batch
    }

    func bytes(_ index: Int) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: umem + Int(descriptors[index].address), count: Int(descriptors[index].length)))
    }

    /// Runs `frames` through `modules` in batches of at most `batchSize`.
    func run(_ frames: [[UInt8]], through modules: [PacketModule], batchSize: Int = 32) -> [Verdict] {
        var verdicts: [Verdict] = []
        var start = 0
        while start < frames.count {
            reset()
            for frame in frames[start..<min(start + batchSize, frames.count)] { add(frame) }
            let batch = parsedBatch()
            for module in modules { module.process(batch) }
            verdicts += (0..<count).map { descriptors[$0].verdict }
            start += batchSize
        }
        return verdicts
    }
}
