import SluiceSystem

#if canImport(Glibc)
import Glibc
#endif

/// File-status helpers with typed errors.
enum FileStatus {
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
