/// A network interface name the kernel would accept (its `dev_valid_name`):
/// validated once, where it enters Sluice (config, control request, command
/// line), so no layer below checks it again.
public struct InterfaceName: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// IFNAMSIZ less the NUL.
    public static let maximumBytes = 15

    public let rawValue: String

    /// Throws ``InterfaceNameError`` naming what the kernel would refuse.
    public init(_ name: String) throws {
        if let problem = Self.problem(name) { throw InterfaceNameError(name: name, problem: problem) }
        rawValue = name
    }

    /// Why the kernel would refuse `name`, or nil.
    public static func problem(_ name: String) -> String? {
        let bytes = name.utf8
        if bytes.isEmpty { return "the interface name is empty" }
        if bytes.count > maximumBytes {
            return "\"\(name.prefix(32))\" is \(bytes.count) bytes long; an interface name has at most \(maximumBytes)"
        }
        if name == "." || name == ".." { return "\"\(name)\" is not a valid interface name" }
        // dev_valid_name: '/', ':' and isspace() (space, \t \n \v \f \r), and no NUL inside.
        let forbidden: Set<UInt8> = [0, UInt8(ascii: "/"), UInt8(ascii: ":"), 0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D]
        if bytes.contains(where: forbidden.contains) {
            return "interface name \"\(name.prefix(32))\" contains '/', ':', whitespace or NUL"
        }
        // The kernel would take other control characters; nobody names an
        // interface so on purpose, and they would garble every log line.
        if let control = bytes.first(where: { $0 < 0x20 || $0 == 0x7f }) {
            return "interface name \"\(name.prefix(32))\" contains the control character 0x\(String(control, radix: 16))"
        }
        return nil
    }

    public var description: String { rawValue }

    public static func < (lhs: InterfaceName, rhs: InterfaceName) -> Bool { lhs.rawValue < rhs.rawValue }
}

public struct InterfaceNameError: Error, Equatable, Sendable, CustomStringConvertible {
    public var name: String
    public var problem: String
    public var description: String { problem }
}

extension InterfaceName: Codable {
    /// On the wire an interface name is a plain JSON string; a bad one fails decoding with the problem.
    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do { try self.init(text) } catch let error as InterfaceNameError {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.problem)
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
