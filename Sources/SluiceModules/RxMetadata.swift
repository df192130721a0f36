/// What the driver said about one received frame, as Sluice's XDP program
/// stored it before the frame (`struct sluice_rx_metadata` in
/// sluice_xdp.bpf.c): its receive timestamp and RSS hash. 24 bytes, no
/// references; `flags` 0 means the driver gave nothing (or the metadata
/// program is not in use).
public struct RxMetadata: Sendable, Equatable {
    /// The driver's receive time in nanoseconds: PHC time, usually
    /// CLOCK_TAI (37 s ahead of UTC), on NICs that stamp; valid only with
    /// ``hasTimestamp``.
    public var timestamp: UInt64
    /// The driver's RSS hash; valid only with ``hasHash``.
    public var hash: UInt32
    /// The kernel's `enum xdp_rss_hash_type` bits for ``hash``.
    public var hashType: UInt32
    public var flags: UInt16

    public static let timestampValid: UInt16 = 1
    public static let hashValid: UInt16 = 2
    /// XDP_RSS_L4 in `enum xdp_rss_hash_type`: the hash covers the ports.
    public static let hashTypeL4: UInt32 = 8

    /// Nothing from the driver.
    public static let none = RxMetadata(timestamp: 0, hash: 0, hashType: 0, flags: 0)

    @inlinable
    public init(timestamp: UInt64, hash: UInt32, hashType: UInt32, flags: UInt16) {
        self.timestamp = timestamp
        self.hash = hash
        self.hashType = hashType
        self.flags = flags
    }

    @inlinable public var hasTimestamp: Bool { flags & Self.timestampValid != 0 }
    @inlinable public var hasHash: Bool { flags & Self.hashValid != 0 }
    /// A hash over addresses and ports: one flow, one value.
    @inlinable public var hasL4Hash: Bool { hasHash && hashType & Self.hashTypeL4 != 0 }

    /// Bytes the XDP program stores before the frame (a multiple of 8).
    public static let storedSize = 24
    /// "SLMD": SLUICE_RX_METADATA_MAGIC.
    @usableFromInline static let magic: UInt32 = 0x534C_4D44
    @usableFromInline static let version: UInt16 = 1

    /// Reads the metadata stored right before a frame's first byte and
    /// clears its magic, so that a later frame in the same UMEM chunk for
    /// which nothing was stored (no room) is not taken to carry it.
    /// Anything without the magic and version is ``none``.
    @inlinable
    public static func take(before frame: UnsafeMutableRawPointer) -> RxMetadata {
        let stored = frame - storedSize
        guard stored.loadUnaligned(as: UInt32.self) == magic,
              stored.loadUnaligned(fromByteOffset: 4, as: UInt16.self) == version
        else { return .none }
        stored.storeBytes(of: 0, as: UInt32.self)
        return RxMetadata(
            timestamp: stored.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
            hash: stored.loadUnaligned(fromByteOffset: 16, as: UInt32.self),
            hashType: stored.loadUnaligned(fromByteOffset: 20, as: UInt32.self),
            flags: stored.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
    }
}
