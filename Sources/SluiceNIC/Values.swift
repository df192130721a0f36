@_exported import SluiceProtocol

extension ChannelsChange: CountChange {
    public typealias Value = Channels

    static let fields: [CountField<ChannelsChange, Channels>] = [
        CountField(name: "rx", change: \.rx, current: \.rx, maximum: \.maxRX),
        CountField(name: "tx", change: \.tx, current: \.tx, maximum: \.maxTX),
        CountField(name: "other", change: \.other, current: \.other, maximum: \.maxOther),
        CountField(name: "combined", change: \.combined, current: \.combined, maximum: \.maxCombined),
    ]
}

extension RingsChange: CountChange {
    public typealias Value = Rings

    static let fields: [CountField<RingsChange, Rings>] = [
        CountField(name: "rx", change: \.rx, current: \.rx, maximum: \.rxMax),
        CountField(name: "rx-mini", change: \.rxMini, current: \.rxMini, maximum: \.rxMiniMax),
        CountField(name: "rx-jumbo", change: \.rxJumbo, current: \.rxJumbo, maximum: \.rxJumboMax),
        CountField(name: "tx", change: \.tx, current: \.tx, maximum: \.txMax),
    ]
}

/// One driver private flag (`ethtool --show-priv-flags`).
public struct PrivateFlag: Codable, Equatable, Sendable {
    public var name: String
    public var enabled: Bool
}

/// One count of `ethtool -L`/`-G`: where it sits in the change, the
/// current value and the maximum.
struct CountField<Change, Value>: Sendable {
    var name: String
    var change: WritableKeyPath<Change, UInt32?> & Sendable
    var current: WritableKeyPath<Value, UInt32> & Sendable
    var maximum: WritableKeyPath<Value, UInt32> & Sendable
}

/// A partial update of counts (channels, rings): nil fields stay as they are.
public protocol CountChange: Codable, Equatable, Sendable {
    associatedtype Value
    init()
}

protocol CountChangeFields: CountChange {
    static var fields: [CountField<Self, Value>] { get }
}

extension ChannelsChange: CountChangeFields {}
extension RingsChange: CountChangeFields {}

extension CountChangeFields {
    public var isEmpty: Bool { Self.fields.allSatisfy { self[keyPath: $0.change] == nil } }

    /// What the counts become when this change is applied to `current`.
    func applied(to current: Value) -> Value {
        var next = current
        for field in Self.fields {
            if let value = self[keyPath: field.change] { next[keyPath: field.current] = value }
        }
        return next
    }

    /// Whether `current` still shows every count this change set.
    func isVisible(in current: Value) -> Bool {
        Self.fields.allSatisfy { field in
            self[keyPath: field.change].map { $0 == current[keyPath: field.current] } ?? true
        }
    }

    /// The same fields with the values `current` has: the change that undoes this one.
    func original(in current: Value) -> Self {
        var undo = Self()
        for field in Self.fields where self[keyPath: field.change] != nil {
            undo[keyPath: field.change] = current[keyPath: field.current]
        }
        return undo
    }

    /// `other` laid over `self`: fields `other` sets win.
    func merging(_ other: Self) -> Self {
        var merged = self
        for field in Self.fields {
            if let value = other[keyPath: field.change] { merged[keyPath: field.change] = value }
        }
        return merged
    }

    /// "rx 9 exceeds the maximum 2 for vapp"
    func validate(against current: Value, interface: String) throws {
        for field in Self.fields {
            if let value = self[keyPath: field.change], value > current[keyPath: field.maximum] {
                throw NICError.invalidArgument(
                    "\(field.name) \(value) exceeds the maximum \(current[keyPath: field.maximum]) for \(interface)")
            }
        }
    }

    /// "combined 2, rx 1" for logs and reports.
    func summary() -> String {
        Self.fields.compactMap { field in self[keyPath: field.change].map { "\(field.name) \($0)" } }
            .joined(separator: ", ")
    }
}
