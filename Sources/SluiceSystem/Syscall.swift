// Syscall wrappers in the style of SwiftNIO's System.swift: retry EINTR,
// throw a typed error that carries the call's name and errno.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import SystemPackage

/// A failed system call: which call, on what, and the errno it returned.
public struct SystemCallError: Error, CustomStringConvertible, Equatable, Sendable {
    public var call: String
    public var errno: Errno

    public init(call: String, errno: Errno) {
        self.call = call
        self.errno = errno
    }

    public var description: String {
        "\(call): \(errno.description) (errno \(errno.rawValue))"
    }
}

/// Runs `body` until it returns something other than -1 with EINTR.
/// A -1 with any other errno becomes a ``SystemCallError`` naming `call`.
@inlinable
@discardableResult
public func retryingEINTR<T: FixedWidthInteger>(
    _ call: @autoclosure () -> String,
    _ body: () -> T
) throws(SystemCallError) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = Glibc.errno
        if code == EINTR { continue }
        throw SystemCallError(call: call(), errno: Errno(rawValue: code))
    }
}

/// The current thread's errno as a typed value.
@inlinable
public var currentErrno: Errno { Errno(rawValue: Glibc.errno) }
