#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// Whole-file writes that survive a crash or power cut at any point: the
/// reader sees the old content or the new, never a mix. Write a temporary
/// file next to the target, fsync it, rename it over the target, fsync the
/// directory so the rename itself is durable.
public enum DurableFile {
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600) throws {
        let directory = Directory.parent(of: path)
        let temporary = "\(path).tmp.\(getpid())"
        let fd = try retryingEINTR("open(\(temporary))") {
            open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        }
        do {
            var written = 0
            while written < bytes.count {
                let n = try bytes.withUnsafeBytes { buffer in
                    try retryingEINTR("write(\(temporary))") {
                        Glibc.write(fd, buffer.baseAddress! + written, buffer.count - written)
                    }
                }
                written += n
            }
            try retryingEINTR("fsync(\(temporary))") { fsync(fd) }
            try retryingEINTR("close(\(temporary))") { close(fd) }
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        do {
            try retryingEINTR("rename(\(temporary), \(path))") { rename(temporary, path) }
        } catch {
            unlink(temporary)
            throw error
        }
        try syncDirectory(directory)
    }

    /// Removes `path` durably; a missing file is not an error.
    public static func remove(_ path: String) throws {
        if unlink(path) != 0 {
            let code = currentErrno
            if code == .noSuchFileOrDirectory { return }
            throw SystemCallError(call: "unlink(\(path))", errno: code)
        }
        try syncDirectory(Directory.parent(of: path))
    }

    /// The whole file, or nil when it does not exist. Other errors throw.
    public static func read(_ path: String, limit: Int = 16 << 20) throws -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let code = currentErrno
            if code == .noSuchFileOrDirectory { return nil }
            throw SystemCallError(call: "open(\(path))", errno: code)
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = try chunk.withUnsafeMutableBytes { buffer in
                try retryingEINTR("read(\(path))") { Glibc.read(fd, buffer.baseAddress, buffer.count) }
            }
            if n == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<n])
            if bytes.count > limit {
                throw SystemCallError(call: "read(\(path)): larger than \(limit) bytes", errno: .fileTooLarge)
            }
        }
    }

    static func syncDirectory(_ directory: String) throws {
        let fd = try retryingEINTR("open(\(directory))") { open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { close(fd) }
        try retryingEINTR("fsync(\(directory))") { fsync(fd) }
    }
}
