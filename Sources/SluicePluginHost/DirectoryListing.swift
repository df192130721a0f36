import SluiceSystem

#if canImport(Glibc)
import Glibc
#endif

/// Directory and file-status helpers with typed errors.
enum DirectoryListing {
    /// Names in `path` except "." and "..", at most `limit` of them.
    static func names(in path: String, limit: Int) throws(SystemCallError) -> [String] {
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

    static func lstatus(_ path: String) throws(SystemCallError) -> stat {
        var status = stat()
        guard lstat(path, &status) == 0 else {
            throw SystemCallError(call: "lstat(\(path))", errno: currentErrno)
        }
        return status
    }

    static func status(of path: String) throws(SystemCallError) -> stat {
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw SystemCallError(call: "stat(\(path))", errno: currentErrno)
        }
        return status
    }
}

extension stat {
    var isRegularFile: Bool { (st_mode & S_IFMT) == S_IFREG }
    var isSymbolicLink: Bool { (st_mode & S_IFMT) == S_IFLNK }
    var isWorldWritable: Bool { (st_mode & S_IWOTH) != 0 }
}
