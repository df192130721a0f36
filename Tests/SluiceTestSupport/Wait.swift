import Foundation
import XCTest

public struct DeadlineExceeded: Error, CustomStringConvertible {
    public var what: String
    public var timeout: Duration
    public var description: String { "timed out after \(timeout) waiting for \(what)" }
}

/// How much longer a deadline is in the VM lab's guest: QEMU without KVM
/// (TCG) runs the same code several times slower than the host, and a cold
/// guest reads every binary over 9p. The condition waited for is the same.
public let deadlineScale: Int64 = ProcessInfo.processInfo.environment["SLUICE_VMLAB_GUEST"] == "1" ? 3 : 1

/// Polls `condition` until it holds or `timeout` (times ``deadlineScale``)
/// passes: synchronisation on a condition with a deadline, never a bare sleep.
public func waitUntil(
    _ what: String,
    timeout: Duration = .seconds(10),
    every interval: Duration = .milliseconds(20),
    _ condition: () throws -> Bool
) throws {
    let clock = ContinuousClock()
    let timeout = timeout * deadlineScale
    let deadline = clock.now.advanced(by: timeout)
    while true {
        if try condition() { return }
        if clock.now >= deadline { throw DeadlineExceeded(what: what, timeout: timeout) }
        Thread.sleep(forTimeInterval: Double(interval.components.attoseconds) / 1e18
                     + Double(interval.components.seconds))
    }
}

/// Like ``waitUntil(_:timeout:every:_:)`` but returns the first non-nil value.
public func waitFor<T>(
    _ what: String,
    timeout: Duration = .seconds(10),
    every interval: Duration = .milliseconds(20),
    _ produce: () throws -> T?
) throws -> T {
    var value: T?
    try waitUntil(what, timeout: timeout, every: interval) {
        value = try produce()
        return value != nil
    }
    return value!
}
