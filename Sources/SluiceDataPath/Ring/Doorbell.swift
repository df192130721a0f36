#if canImport(Glibc)
import Glibc
#endif
import CSluiceShims
import SluiceSystem

/// An eventfd a sleeping thread waits on and another thread rings.
///
/// Used with ``SPSCRing/prepareToSleep()`` / ``SPSCRing/takeWakeupRequest()``
/// so the producer makes a system call only when the consumer actually sleeps.
/// The descriptor can also go into a `poll()` set next to an AF_XDP socket.
public final class Doorbell: @unchecked Sendable {
    public let fileDescriptor: Int32

    public init() throws {
        fileDescriptor = try retryingEINTR("eventfd") { sluice_eventfd() }
    }

    deinit { close(fileDescriptor) }

    /// Wakes the waiter (or makes its next wait return at once).
    public func ring() {
        var one: UInt64 = 1
        // EAGAIN only when the counter is at its maximum: the waiter is woken anyway.
        _ = withUnsafeBytes(of: &one) { write(fileDescriptor, $0.baseAddress, 8) }
    }

    /// Blocks until rung or until `timeoutMilliseconds` pass (-1: no limit).
    /// Returns whether it was rung; resets the bell either way.
    @discardableResult
    public func wait(timeoutMilliseconds: Int32) -> Bool {
        var descriptor = pollfd(fd: fileDescriptor, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, timeoutMilliseconds)
        return ready > 0 && reset()
    }

    /// Clears a pending ring without blocking; returns whether there was one.
    @discardableResult
    public func reset() -> Bool {
        var value: UInt64 = 0
        return withUnsafeMutableBytes(of: &value) { read(fileDescriptor, $0.baseAddress, 8) } == 8
    }
}
