import NIOPosix
import SluiceControl
import SluiceNIC
import SluicePluginHost

/// Runs blocking work (ioctl, libnl, dlopen, file I/O) on NIO's thread pool:
/// never on an event loop or Swift's cooperative pool, which on two cores
/// would starve the control socket and signal handling.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await NIOThreadPool.singleton.runIfActive(body)
}

extension NICError: ControlErrorConvertible {
    public var controlError: ControlError {
        ControlError(ErrorCode(rawValue: code) ?? .internal, description)
    }
}

extension PluginHostError: ControlErrorConvertible {
    public var controlError: ControlError {
        ControlError(ErrorCode(rawValue: controlErrorCode) ?? .internal, description)
    }
}
