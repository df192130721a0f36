#if canImport(Glibc)
import Glibc
#endif

/// The directories Sluice writes into (state and journal, captures, the
/// control socket's): made when missing, like `mkdir -p`, and checked up front
/// so that a path that can never be made is refused when the configuration is
/// read, naming the path and the fix, instead of a pipeline that does not start.
public enum Directory {
    /// Makes `path` and its missing parents; each directory made here gets
    /// exactly `mode` (the umask does not apply) and the caller's owner.
    /// Existing directories are left as they are.
    public static func create(_ path: String, mode: mode_t) throws {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/\(component)"
            if mkdir(prefix, mode) == 0 {
                // mkdir's mode passes through the umask; the configured one must not.
                if chmod(prefix, mode) != 0 { throw SystemCallError(call: "chmod(\(prefix))", errno: currentErrno) }
                continue
            }
            let code = currentErrno
            guard code == .fileExists else { throw SystemCallError(call: "mkdir(\(prefix))", errno: code) }
            guard isDirectory(prefix) else {
                throw SystemCallError(call: "mkdir(\(prefix)): it exists and is not a directory", errno: .notDirectory)
            }
        }
    }

    /// What to tell the operator after a ``problem(creating:)``.
    public static let fix = "create it or choose a path on a writable file system"

    /// Why `path` cannot be used as a directory or made as one by this
    /// process, in words for the operator; nil when it can. Makes nothing.
    public static func problem(creating path: String) -> String? {
        guard path.hasPrefix("/") else { return "'\(path)' is not an absolute path" }
        var info = stat()
        if stat(path, &info) == 0 {
            return (info.st_mode & S_IFMT) == S_IFDIR ? nil : "'\(path)' exists and is not a directory"
        }
        // The nearest existing ancestor decides whether the rest can be made.
        var ancestor = parent(of: path)
        while stat(ancestor, &info) != 0 {
            guard currentErrno == .noSuchFileOrDirectory else {
                return "'\(path)' cannot be made: \(ancestor): \(currentErrno.description)"
            }
            ancestor = parent(of: ancestor)
        }
        guard (info.st_mode & S_IFMT) == S_IFDIR else {
            return "'\(path)' cannot be made: '\(ancestor)' is not a directory"
        }
        // Without root, EACCES speaks of the caller (`sluiced --check` run by
        // an operator), not of the daemon's user; a read-only file system or
        // root's refusal speaks of the daemon.
        if access(ancestor, W_OK | X_OK) != 0, geteuid() == 0 || currentErrno != .permissionDenied {
            return "'\(path)' does not exist and cannot be made: '\(ancestor)' is not writable"
                + " (\(currentErrno.description))"
        }
        return nil
    }

    /// Names in `path` except "." and "..", at most `limit` of them.
    public static func names(in path: String, limit: Int) throws(SystemCallError) -> [String] {
        guard let dir = opendir(path) else {
            throw SystemCallError(call: "opendir(\(path))", errno: currentErrno)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while names.count < limit, let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    public static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// `/a/b` for `/a/b/c`, `/` for `/a`.
    public static func parent(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        let parent = trimmed[..<slash]
        return parent.isEmpty ? "/" : String(parent)
    }
}
