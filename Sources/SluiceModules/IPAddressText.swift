#if canImport(Glibc)
import Glibc
#endif

/// Converts between address text and the two big-endian integers
/// ``PacketHeaders`` keeps (IPv4 in the top 4 bytes of `high`).
public enum IPAddressText {
    /// Parses "192.0.2.1" or "2001:db8::1"; nil for anything else.
    public static func parse(_ text: String) -> (version: UInt8, high: UInt64, low: UInt64)? {
        guard text.utf8.count <= 64 else { return nil }
        var bytes = (UInt64(0), UInt64(0))
        if text.contains(":") {
            let ok = withUnsafeMutableBytes(of: &bytes) { inet_pton(AF_INET6, text, $0.baseAddress) == 1 }
            guard ok else { return nil }
            return (6, UInt64(bigEndian: bytes.0), UInt64(bigEndian: bytes.1))
        }
        let ok = withUnsafeMutableBytes(of: &bytes) { inet_pton(AF_INET, text, $0.baseAddress) == 1 }
        guard ok else { return nil }
        return (4, UInt64(bigEndian: bytes.0) & 0xFFFF_FFFF_0000_0000, 0)
    }

    /// Formats an address; "-" for version 0 (no IP).
    public static func format(version: UInt8, high: UInt64, low: UInt64) -> String {
        guard version == 4 || version == 6 else { return "-" }
        var bytes = (high.bigEndian, low.bigEndian)
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = version == 4 ? AF_INET : AF_INET6
        let ok = withUnsafeBytes(of: &bytes) { raw in
            text.withUnsafeMutableBufferPointer {
                inet_ntop(family, raw.baseAddress, $0.baseAddress, socklen_t($0.count)) != nil
            }
        }
        guard ok else { return "?" }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
