#if canImport(Glibc)
import Glibc
#endif

/// Small readers for the kernel's text files under /proc and /sys.
public enum KernelFiles {
    /// Reads a small text file whole (at most `limit` bytes), or nil if it
    /// cannot be opened. /proc and /sys files report size 0, so read until EOF.
    public static func read(_ path: String, limit: Int = 1 << 20) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < limit {
            let n = chunk.withUnsafeMutableBytes { buf in
                try? retryingEINTR("read(\(path))") { Glibc.read(fd, buf.baseAddress, buf.count) }
            }
            guard let n, n > 0 else { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes.prefix(limit), as: UTF8.self)
    }

    /// `/proc/sys/kernel/random/boot_id`, trimmed: changes on every boot.
    public static func bootID() -> String? {
        read("/proc/sys/kernel/random/boot_id")?.trimmingTrailingNewlines()
    }

    /// The running kernel's release (`uname -r`).
    public static func kernelRelease() -> String {
        var name = utsname()
        uname(&name)
        return withUnsafeBytes(of: &name.release) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }
}

extension String {
    /// The string without trailing newlines and spaces.
    public func trimmingTrailingNewlines() -> String {
        var s = Substring(self)
        while let last = s.last, last == "\n" || last == " " || last == "\r" { s = s.dropLast() }
        return String(s)
    }
}
