import Atomics

/// swift-atomics' storage for a `UInt64` (spelled through UnsafeAtomic: the
/// standard library's Synchronization makes `UInt64.AtomicRepresentation`
/// ambiguous).
@usableFromInline
typealias AtomicWord = UnsafeAtomic<UInt64>.Storage

/// A fixed array of 64-bit counters that one data-path thread writes and
/// control threads read at snapshot time. Relaxed atomic loads and stores
/// (plain `mov`s on x86-64 and arm64) give the racy read a defined meaning
/// without the cost of a locked read-modify-write: there is only one writer,
/// so `load + store` is an exact increment.
public struct CounterArray {
    @usableFromInline
    let base: UnsafeMutablePointer<AtomicWord>
    @usableFromInline
    let count: Int

    public init(count: Int) {
        precondition(count > 0)
        self.count = count
        base = .allocate(capacity: count)
        for index in 0..<count { (base + index).initialize(to: .init(0)) }
    }

    public func deallocate() {
        base.deinitialize(count: count)
        base.deallocate()
    }

    /// Data-path thread only.
    @inlinable @inline(__always)
    public func add(_ index: Int, _ amount: UInt64) {
        let slot = base + index
        let value = AtomicWord.atomicLoad(at: slot, ordering: .relaxed)
        AtomicWord.atomicStore(value &+ amount, at: slot, ordering: .relaxed)
    }

    /// Any thread.
    @inlinable @inline(__always)
    public func load(_ index: Int) -> UInt64 {
        AtomicWord.atomicLoad(at: base + index, ordering: .relaxed)
    }
}
