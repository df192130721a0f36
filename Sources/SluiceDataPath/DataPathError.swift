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

/// Facts about an interface the data path needs, read from sysfs and ethtool.
public enum InterfaceFacts {
    /// The driver's name (`ethtool -i`), or nil when the interface has none to report.
    public static func driverName(_ interface: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 64)
        let result = buffer.withUnsafeMutableBufferPointer {
            sluice_driver_name(interface, $0.baseAddress, UInt($0.count))
        }
        guard result == 0 else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The number of `rx-N` entries under /sys/class/net/IF/queues (which on
    /// old mlx5 counts the XSK queues too, so XSKMAP keys nch+i fit).
    public static func rxQueueCount(_ interface: String) throws -> Int {
        guard !interface.isEmpty, !interface.contains("/"), interface != ".", interface != ".." else {
            throw DataPathError("invalid interface name '\(interface)'")
        }
        let path = "/sys/class/net/\(interface)/queues"
        guard let directory = opendir(path) else {
            throw DataPathError("cannot read the rx queues of \(interface) (\(path))", errno: Errno(rawValue: Glibc.errno))
        }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasPrefix("rx-") { count += 1 }
        }
        return count
    }

    public static func index(_ interface: String) throws -> Int32 {
        let index = if_nametoindex(interface)
        guard index != 0 else {
            throw DataPathError("no interface named '\(interface)'", errno: Errno(rawValue: Glibc.errno))
        }
        guard let value = Int32(exactly: index) else { throw DataPathError("interface index \(index) of \(interface) out of range") }
        return value
    }
}
