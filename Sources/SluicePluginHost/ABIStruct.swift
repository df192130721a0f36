import CSluiceDriverABI

/// The C sizeof of each struct the host and plugins exchange, from the C
/// compiler (`sluice/driver_host.h`): `sz` must be what a C plugin's
/// `sizeof` says, so it comes from where a plugin's comes from.
enum ABISize {
    static let facts = sluice_abi__sizeof_facts()
    static let queueMap = sluice_abi__sizeof_queue_map()
    static let requirements = sluice_abi__sizeof_requirements()
    static let channelCounts = sluice_abi__sizeof_channel_counts()
    static let plugin = sluice_abi__sizeof_plugin()
}

/// Calls `body` with a `T` laid out as a C caller would hand it to a plugin:
/// `size` bytes (its C sizeof), every byte zero, padding included, so a
/// plugin never reads stale host memory, and `sz` (the first member of every
/// ABI struct) set to `size`. Swift promises nothing about the padding bytes
/// of a struct value (a copy or a temporary may leave them undefined), so the
/// struct lives in memory zeroed here and is written field by field through
/// the pointer, never stored as a whole value.
func withZeroedABIStruct<T, R, E: Error>(
    _: T.Type, size: Int, _ body: (UnsafeMutablePointer<T>) throws(E) -> R
) throws(E) -> R {
    precondition(size >= MemoryLayout<T>.size && size >= MemoryLayout<Int>.size, "ABI size \(size) is too small for \(T.self)")
    let alignment = max(MemoryLayout<T>.alignment, MemoryLayout<Int>.alignment)
    let raw = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: alignment)
    defer { raw.deallocate() }
    raw.initializeMemory(as: UInt8.self, repeating: 0, count: size)
    raw.storeBytes(of: size, as: Int.self)  // size_t sz
    return try body(raw.bindMemory(to: T.self, capacity: 1))
}
