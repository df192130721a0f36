#if canImport(Glibc)
import Glibc
#endif
import SluiceSystem
import SystemPackage

/// Group look-ups through NSS (`getgrnam_r`). Blocking: NSS may ask LDAP or
/// sssd, so call this from a thread that may block, never an event loop.
enum GroupDatabase {
    enum Answer: Equatable {
        case found(gid: UInt32)
        case notFound
        case invalidName(String)
        case failed(SystemCallError)
    }

    /// Longer names than any NSS backend accepts are a typo, not a group.
    static let maximumNameBytes = 256
    /// getgrnam_r reports ERANGE until the buffer holds the member list;
    /// stop doubling here so a hostile directory cannot exhaust memory.
    static let maximumBufferBytes = 1 << 20

    static func lookUp(_ name: String) -> Answer {
        guard name.utf8.count <= maximumNameBytes else {
            return .invalidName("longer than \(maximumNameBytes) bytes")
        }
        guard !name.utf8.contains(0) else { return .invalidName("it contains a NUL character") }

        var bufferSize = 1024
        let suggested = sysconf(Int32(_SC_GETGR_R_SIZE_MAX))
        if suggested > 0 {
            bufferSize = min(suggested, maximumBufferBytes)
        }
        while true {
            var group = Glibc.group()
            var result: UnsafeMutablePointer<Glibc.group>?
            var buffer = [CChar](repeating: 0, count: bufferSize)
            let code = buffer.withUnsafeMutableBufferPointer { storage in
                getgrnam_r(name, &group, storage.baseAddress, storage.count, &result)
            }
            switch code {
            case 0:
                guard let result else { return .notFound }
                return .found(gid: result.pointee.gr_gid)
            case ENOENT, ESRCH, EBADF, EPERM:
                // getgrnam_r(3): these also mean "no such group" on some backends.
                return .notFound
            case ERANGE where bufferSize < maximumBufferBytes:
                bufferSize = min(bufferSize * 2, maximumBufferBytes)
            case EINTR:
                continue
            default:
                return .failed(SystemCallError(call: "getgrnam_r(\(name))", errno: Errno(rawValue: code)))
            }
        }
    }
}
