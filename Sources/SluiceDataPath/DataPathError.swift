#if canImport(Glibc)
import Glibc
#endif
import CSluiceShims
import SystemPackage

/// A data-path failure that names what failed (interface, queue, driver,
/// operation) and carries the errno when there is one.
public struct DataPathError: Error, CustomStringConvertible, Sendable, Equatable {
    public var message: String
    public var errno: Errno?

    public init(_ message: String, errno: Errno? = nil) {
        self.message = message
        self.errno = errno
    }

    /// From a libbpf/libxdp return value (`-errno`).
    init(_ message: String, negativeErrno: Int32) {
        self.init(message, errno: Errno(rawValue: -negativeErrno))
    }

    public var description: String {
        guard let errno else { return message }
        return "\(message): \(errno.described)"
    }
}

extension Errno {
    /// "Device or resource busy (EBUSY)": the text and the name people search for.
    var described: String { "\(description) (\(symbolicName))" }

    /// The C macro name, which is what people search for ("EOPNOTSUPP").
    var symbolicName: String {
        switch rawValue {
        case Glibc.EOPNOTSUPP: return "EOPNOTSUPP"
        case Glibc.EBUSY: return "EBUSY"
        case Glibc.EINVAL: return "EINVAL"
        case Glibc.EACCES: return "EACCES"
        case Glibc.EPERM: return "EPERM"
        case Glibc.ENOENT: return "ENOENT"
        case Glibc.ENODEV: return "ENODEV"
        case Glibc.ENOMEM: return "ENOMEM"
        case Glibc.EEXIST: return "EEXIST"
        case Glibc.ERANGE: return "ERANGE"
        case Glibc.ENOPROTOOPT: return "ENOPROTOOPT"
        case Glibc.EAFNOSUPPORT: return "EAFNOSUPPORT"
        case 524: return "ENOTSUPP"  // the kernel's own, without a userspace name
        default: return "errno \(rawValue)"
        }
    }
}

/// The interface index the data path needs (the queue counts and the driver
/// come from SluiceSystem's ``NetworkDevice``).
public enum InterfaceFacts {
    public static func index(_ interface: String) throws -> Int32 {
        let index = if_nametoindex(interface)
        guard index != 0 else {
            throw DataPathError("no interface named '\(interface)'", errno: Errno(rawValue: Glibc.errno))
        }
        guard let value = Int32(exactly: index) else { throw DataPathError("interface index \(index) of \(interface) out of range") }
        return value
    }
}
