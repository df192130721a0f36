extension Methods {
    public enum ChannelsGet: ControlMethod {
        public typealias Request = InterfaceRequest
        public typealias Response = Served<Channels>
        public static let name = "channels.get"
        public static let level = AccessLevel.read
        public static let summary = "Channel counts and maximums (ethtool -l)"
        public static let arguments = [InterfaceRequest.argument]
    }

    public enum ChannelsSet: ControlMethod {
        public typealias Response = Served<Channels>
        public static let name = "channels.set"
        public static let level = AccessLevel.admin
        public static let summary = "Set channel counts (ethtool -L); the driver plugin may veto"
        public static let arguments = [
            InterfaceRequest.argument,
            ArgumentSpec(Request.CodingKeys.rx, UInt32.self, "rx channels"),
            ArgumentSpec(Request.CodingKeys.tx, UInt32.self, "tx channels"),
            ArgumentSpec(Request.CodingKeys.other, UInt32.self, "other channels"),
            ArgumentSpec(Request.CodingKeys.combined, UInt32.self, "combined channels"),
        ]

        /// The counts to change; nil leaves a count alone.
        public struct Request: Codable, Sendable, Equatable {
            public var iface: InterfaceName
            public var rx: UInt32?, tx: UInt32?, other: UInt32?, combined: UInt32?

            public init(iface: InterfaceName, rx: UInt32? = nil, tx: UInt32? = nil, other: UInt32? = nil, combined: UInt32? = nil) {
                self.iface = iface; self.rx = rx; self.tx = tx; self.other = other; self.combined = combined
            }

            public enum CodingKeys: String, CodingKey { case iface, rx, tx, other, combined }
        }
    }

    public enum RingsGet: ControlMethod {
        public typealias Request = InterfaceRequest
        public typealias Response = Served<Rings>
        public static let name = "rings.get"
        public static let level = AccessLevel.read
        public static let summary = "Ring sizes and maximums (ethtool -g)"
        public static let arguments = [InterfaceRequest.argument]
    }

    public enum RingsSet: ControlMethod {
        public typealias Response = Served<Rings>
        public static let name = "rings.set"
        public static let level = AccessLevel.admin
        public static let summary = "Set ring sizes (ethtool -G)"
        public static let arguments = [
            InterfaceRequest.argument,
            ArgumentSpec(Request.CodingKeys.rx, UInt32.self, "rx ring"),
            ArgumentSpec(Request.CodingKeys.rxMini, UInt32.self, "rx mini ring"),
            ArgumentSpec(Request.CodingKeys.rxJumbo, UInt32.self, "rx jumbo ring"),
            ArgumentSpec(Request.CodingKeys.tx, UInt32.self, "tx ring"),
        ]

        /// Ring sizes to change; nil leaves one alone.
        public struct Request: Codable, Sendable, Equatable {
            public var iface: InterfaceName
            public var rx: UInt32?, rxMini: UInt32?, rxJumbo: UInt32?, tx: UInt32?

            public init(iface: InterfaceName, rx: UInt32? = nil, rxMini: UInt32? = nil, rxJumbo: UInt32? = nil, tx: UInt32? = nil) {
                self.iface = iface; self.rx = rx; self.rxMini = rxMini; self.rxJumbo = rxJumbo; self.tx = tx
            }

            public enum CodingKeys: String, CodingKey { case iface, rx, tx, rxMini = "rx_mini", rxJumbo = "rx_jumbo" }
        }
    }
}

/// The request of a method about one interface.
public struct InterfaceRequest: Codable, Sendable, Equatable {
    public var iface: InterfaceName
    public init(iface: InterfaceName) { self.iface = iface }
    public enum CodingKeys: String, CodingKey { case iface }

    public static let argument = ArgumentSpec(CodingKeys.iface, .string, required: true, "interface name, e.g. eth0")
}

/// A value together with the ethtool interface that produced it.
public struct Served<Value: Codable & Equatable & Sendable>: Codable, Equatable, Sendable {
    public var value: Value
    public var backend: EthtoolBackend
    public init(_ value: Value, backend: EthtoolBackend) { self.value = value; self.backend = backend }
    enum CodingKeys: String, CodingKey { case value, backend }
}

/// `ethtool -l`: channel counts and their maxima.
public struct Channels: Codable, Equatable, Sendable {
    public var maxRX: UInt32, maxTX: UInt32, maxOther: UInt32, maxCombined: UInt32
    public var rx: UInt32, tx: UInt32, other: UInt32, combined: UInt32

    public init(maxRX: UInt32 = 0, maxTX: UInt32 = 0, maxOther: UInt32 = 0, maxCombined: UInt32 = 0,
                rx: UInt32 = 0, tx: UInt32 = 0, other: UInt32 = 0, combined: UInt32 = 0) {
        self.maxRX = maxRX; self.maxTX = maxTX; self.maxOther = maxOther; self.maxCombined = maxCombined
        self.rx = rx; self.tx = tx; self.other = other; self.combined = combined
    }

    enum CodingKeys: String, CodingKey {
        case rx, tx, other, combined
        case maxRX = "max_rx", maxTX = "max_tx", maxOther = "max_other", maxCombined = "max_combined"
    }
}

/// `ethtool -g`: ring sizes and their maxima.
public struct Rings: Codable, Equatable, Sendable {
    public var rxMax: UInt32, rxMiniMax: UInt32, rxJumboMax: UInt32, txMax: UInt32
    public var rx: UInt32, rxMini: UInt32, rxJumbo: UInt32, tx: UInt32

    public init(rxMax: UInt32 = 0, rxMiniMax: UInt32 = 0, rxJumboMax: UInt32 = 0, txMax: UInt32 = 0,
                rx: UInt32 = 0, rxMini: UInt32 = 0, rxJumbo: UInt32 = 0, tx: UInt32 = 0) {
        self.rxMax = rxMax; self.rxMiniMax = rxMiniMax; self.rxJumboMax = rxJumboMax; self.txMax = txMax
        self.rx = rx; self.rxMini = rxMini; self.rxJumbo = rxJumbo; self.tx = tx
    }

    enum CodingKeys: String, CodingKey {
        case rx, tx, rxMini = "rx_mini", rxJumbo = "rx_jumbo"
        case rxMax = "rx_max", rxMiniMax = "rx_mini_max", rxJumboMax = "rx_jumbo_max", txMax = "tx_max"
    }
}
