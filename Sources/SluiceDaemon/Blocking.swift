import Foundation
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

/// Results on the wire use snake_case keys (`max_rx`, `bind_queue`), as the
/// rest of protocol v1 does.
enum WireEncoding {
    static func encode<T: Encodable>(_ value: T) throws -> JSONValue {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(value)
        return try JSONValue.parse(data)
    }
}
