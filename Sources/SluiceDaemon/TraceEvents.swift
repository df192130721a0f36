import Foundation
import SluiceProtocol
import SluiceSystem
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Reading `xdp:*` tracepoint events as tracefs prints them, e.g.
/// `<idle>-0 [001] ..s2. 812.5: xdp_redirect_err: prog_id=41 action=REDIRECT ifindex=7 to_ifindex=0 err=-28 map_id=12 map_index=0`.
extension TraceEvent {
    /// The longest line kept: tracefs lines of the xdp events are ~150 bytes.
    static let maximumLineLength = 1024

    /// Parses one tracefs line; nil for comments and lines that carry no event.
    static func parse(_ line: Substring) -> TraceEvent? {
        let line = line.prefix(maximumLineLength)
        guard !line.hasPrefix("#"), let bracket = line.firstIndex(of: "]") else { return nil }
        // After "[cpu]": flags, timestamp ":", event name ":", fields.
        let afterCPU = line[line.index(after: bracket)...]
        guard let stampEnd = afterCPU.range(of: ": ") else { return nil }
        let stamp = afterCPU[..<stampEnd.lowerBound].split(separator: " ").last.flatMap { Double($0) }
        let rest = afterCPU[stampEnd.upperBound...]
        guard let nameEnd = rest.range(of: ":") else { return nil }
        let name = String(rest[..<nameEnd.lowerBound])
        guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else { return nil }
        var event = TraceEvent(event: name, timestamp: stamp, raw: String(line))
        for field in rest[nameEnd.upperBound...].split(separator: " ") {
            guard let equals = field.firstIndex(of: "=") else { continue }
            let key = field[..<equals], value = String(field[field.index(after: equals)...])
            switch key {
            case "ifindex": event.ifindex = UInt32(value)
            case "action": event.action = value
            case "prog_id": event.progID = UInt32(value)
            case "err": event.err = Int32(value)
            case "to_ifindex": event.toIfindex = UInt32(value)
            case "map_id": event.mapID = UInt32(value)
            case "map_index": event.mapIndex = UInt32(value)
            default: break
            }
        }
        return event
    }

    /// The events that mean a frame was lost in XDP (what `doctor` looks for).
    static let failureEvents = ["xdp_exception", "xdp_redirect_err", "xdp_redirect_map_err"]
}

struct TraceError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Sluice's own tracefs instance (`instances/sluice-PID`), so enabling
/// events never disturbs the global trace buffer, anyone else's instance, or
/// another sluiced on the same host (labs, tests).
struct TraceInstance: Sendable {
    static let candidateRoots = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
    static let namePrefix = "sluice-"
    let root: String
    var path: String { root + "/instances/\(Self.namePrefix)\(getpid())" }

    /// Finds tracefs, mounting it on /sys/kernel/tracing when the kernel
    /// offers the mount point but nobody mounted it (containers, minimal systems).
    static func locate() throws -> TraceInstance {
        if let root = candidateRoots.first(where: { FileManager.default.fileExists(atPath: $0 + "/events") }) {
            return TraceInstance(root: root)
        }
        let mountPoint = candidateRoots[0]
        if FileManager.default.fileExists(atPath: mountPoint), mount("tracefs", mountPoint, "tracefs", 0, nil) == 0,
            FileManager.default.fileExists(atPath: mountPoint + "/events")
        {
            return TraceInstance(root: mountPoint)
        }
        throw TraceError("tracefs is not available (looked at \(candidateRoots.joined(separator: ", ")); mounting it failed: \(String(cString: strerror(errno)))")
    }

    /// The `xdp:*` events this kernel has.
    func availableEvents() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root + "/events/xdp")) ?? []
        return names.filter { FileManager.default.fileExists(atPath: root + "/events/xdp/\($0)/enable") }.sorted()
    }

    /// Creates the instance (or takes over one a crashed sluiced left) with
    /// every event off and an empty buffer.
    func create() throws {
        removeStaleInstances()
        do {
            try Directory.create(path, mode: 0o700)
        } catch {
            throw TraceError("cannot create the tracefs instance: \(error)")
        }
        try write("0", to: path + "/events/enable")
        try write("", to: path + "/trace", truncate: true)
    }

    /// Instances of sluiced processes that died without removing theirs
    /// (SIGKILL) would keep tracing into their buffers forever.
    private func removeStaleInstances() {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root + "/instances")) ?? []
        for name in names where name.hasPrefix(Self.namePrefix) {
            guard let pid = pid_t(name.dropFirst(Self.namePrefix.count)), pid != getpid() else { continue }
            if kill(pid, 0) != 0, errno == ESRCH { _ = rmdir(root + "/instances/" + name) }
        }
    }

    /// Removes the instance; the kernel frees its buffer.
    func remove() {
        _ = rmdir(path)
    }

    func setEnabled(_ event: String, _ enabled: Bool) throws {
        try write(enabled ? "1" : "0", to: path + "/events/xdp/\(event)/enable")
    }

    /// Keeps only events of these interfaces in the kernel (nil: all), so a
    /// busy XDP program elsewhere cannot flood the buffer. Events without
    /// an ifindex field refuse a filter; they stay unfiltered.
    func setInterfaceFilter(_ event: String, _ ifindexes: Set<UInt32>?) {
        let expression = ifindexes.map { set in
            set.isEmpty ? "ifindex == 0" : set.sorted().map { "ifindex == \($0)" }.joined(separator: " || ")
        } ?? "0"
        try? write(expression, to: path + "/events/xdp/\(event)/filter")
    }

    /// Whatever `trace_pipe` holds now, without waiting (consumed as read),
    /// at most `limit` bytes.
    func drainPipe(limit: Int = 1 << 20) throws -> [UInt8] {
        let fd = open(path + "/trace_pipe", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            throw TraceError("cannot open \(path)/trace_pipe: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while bytes.count < limit {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count > 0 {
                bytes.append(contentsOf: chunk[..<count])
            } else if count < 0, errno == EINTR {
                continue
            } else {
                break  // EAGAIN: nothing more buffered; 0: end
            }
        }
        return bytes
    }

    private func write(_ text: String, to file: String, truncate: Bool = false) throws {
        let fd = open(file, O_WRONLY | O_CLOEXEC | (truncate ? O_TRUNC : 0))
        guard fd >= 0 else { throw TraceError("cannot open \(file): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard !text.isEmpty else { return }
        let written = Array(text.utf8).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == text.utf8.count else {
            throw TraceError("cannot write \"\(text)\" to \(file): \(String(cString: strerror(errno)))")
        }
    }
}

/// The process's one reader of Sluice's tracefs instance. Events are enabled
/// while someone wants them (reference counted per event), read from
/// `trace_pipe` into a bounded buffer, and handed to each subscriber from
/// its own cursor. The instance goes away when the last subscriber leaves.
final class TraceHub: Sendable {
    static let shared = TraceHub()
    private let state = Mutex(State())

    fileprivate struct State {
        var instance: TraceInstance?
        var references: [String: Int] = [:]
        /// Each live subscription's interfaces (nil: every interface).
        var interfaceFilters: [UInt64: Set<UInt32>?] = [:]
        var nextSubscriptionID: UInt64 = 0
        var log = TraceEventLog()
        var partialLine: [UInt8] = []
    }

    /// Enables `events` (nil: every `xdp:*` event the kernel has) and returns
    /// a subscription whose release (or deinit) disables them again.
    func subscribe(events requested: [String]?, ifindexes: Set<UInt32>? = nil) throws -> TraceSubscription {
        try state.withLock { state in
            let instance = try state.instance ?? TraceInstance.locate()
            let available = instance.availableEvents()
            let events: [String]
            if let requested {
                if let unknown = requested.first(where: { !available.contains($0) }) {
                    throw TraceError("event \"\(unknown.prefix(64))\" is not an xdp tracepoint of this kernel (it has \(available.joined(separator: ", ")))")
                }
                events = Array(Set(requested)).sorted()
            } else {
                events = available
            }
            if state.instance == nil {
                try instance.create()
                state.instance = instance
            }
            do {
                for event in events where state.references[event, default: 0] == 0 { try instance.setEnabled(event, true) }
            } catch {
                if state.references.isEmpty { instance.remove(); state.instance = nil }
                throw error
            }
            for event in events { state.references[event, default: 0] += 1 }
            state.nextSubscriptionID += 1
            state.interfaceFilters[state.nextSubscriptionID] = ifindexes
            state.applyFilters(instance)
            return TraceSubscription(
                hub: self, id: state.nextSubscriptionID, events: events,
                cursor: state.log.end)
        }
    }

    fileprivate func release(id: UInt64, _ events: [String]) {
        state.withLock { state in
            state.interfaceFilters[id] = nil
            guard let instance = state.instance else { return }
            for event in events {
                let count = state.references[event, default: 0] - 1
                state.references[event] = count > 0 ? count : nil
                if count <= 0 { try? instance.setEnabled(event, false) }
            }
            if state.references.isEmpty {
                instance.remove()
                state.instance = nil
                state.partialLine = []
            } else {
                state.applyFilters(instance)
            }
        }
    }

    /// Reads what tracefs has, then returns the buffered events from
    /// `cursor` on and the cursor to continue from; `lost` counts events
    /// that fell out of the buffer before this reader got to them.
    func read(from cursor: UInt64) -> (events: [TraceEvent], next: UInt64, lost: UInt64) {
        state.withLock { state in
            state.drain()
            return state.log.read(from: cursor)
        }
    }

    /// The last failure events (``TraceEvent/failureEvents``), including
    /// those subscribers have read already.
    func recentFailures() -> [TraceEvent] {
        state.withLock { state in
            state.drain()
            return state.log.failures
        }
    }
}

extension TraceHub.State {
    /// The union of what the subscriptions want, on every enabled event.
    fileprivate func applyFilters(_ instance: TraceInstance) {
        var union: Set<UInt32>? = []
        for wanted in interfaceFilters.values {
            guard let wanted else { union = nil; break }
            union?.formUnion(wanted)
        }
        for event in references.keys { instance.setInterfaceFilter(event, union) }
    }

    fileprivate mutating func drain() {
        guard let instance, let bytes = try? instance.drainPipe(), !bytes.isEmpty else { return }
        partialLine.append(contentsOf: bytes)
        guard let lastNewline = partialLine.lastIndex(of: 0x0A) else {
            if partialLine.count > TraceEvent.maximumLineLength { partialLine = [] }
            return
        }
        let complete = String(decoding: partialLine[..<lastNewline], as: UTF8.self)
        partialLine.removeSubrange(...lastNewline)
        log.append(contentsOf: complete.split(separator: "\n").compactMap(TraceEvent.parse))
    }
}

/// The events read from tracefs: the last ``capacity`` for subscribers'
/// cursors, and the last failures for doctor on their own, because a flood
/// of successful redirects (another pipeline, or an interface with the same
/// ifindex in another network namespace, which the kernel's ifindex filter
/// cannot tell apart) must not push them out before doctor reads.
struct TraceEventLog {
    static let capacity = 4096
    static let failureCapacity = 1024

    private(set) var events: [TraceEvent] = []
    private(set) var failures: [TraceEvent] = []
    /// Sequence number of `events[0]`.
    private(set) var firstSequence: UInt64 = 0
    /// The sequence number the next event gets.
    var end: UInt64 { firstSequence + UInt64(events.count) }

    /// Trims once per drain, not per event: a flood is read in one go.
    mutating func append(contentsOf new: [TraceEvent]) {
        events += new
        if events.count > Self.capacity {
            let excess = events.count - Self.capacity
            events.removeFirst(excess)
            firstSequence += UInt64(excess)
        }
        failures += new.filter { TraceEvent.failureEvents.contains($0.event) }
        if failures.count > Self.failureCapacity { failures.removeFirst(failures.count - Self.failureCapacity) }
    }

    /// The events from `cursor` on and the cursor to continue from; `lost`
    /// counts events that fell out before this reader got to them.
    func read(from cursor: UInt64) -> (events: [TraceEvent], next: UInt64, lost: UInt64) {
        let start = max(cursor, firstSequence)
        let lost = start - min(cursor, start)
        let slice = events[Int(min(start, end) - firstSequence)...]
        return (Array(slice), end, lost)
    }
}

/// One subscriber's hold on some events and its read position. Releasing
/// happens at most once, explicitly or when the owner (a stream's closure)
/// goes away, so a connection that closes gives its events back.
final class TraceSubscription: Sendable {
    let events: [String]
    private let hub: TraceHub
    private let id: UInt64
    private let cursor: Mutex<UInt64>
    private let released = Mutex(false)

    fileprivate init(hub: TraceHub, id: UInt64, events: [String], cursor: UInt64) {
        self.hub = hub
        self.id = id
        self.events = events
        self.cursor = Mutex(cursor)
    }

    /// Events since the last call (only this subscription's event names).
    func next() -> (events: [TraceEvent], lost: UInt64) {
        cursor.withLock { cursor in
            let (events, next, lost) = hub.read(from: cursor)
            cursor = next
            return (events.filter { self.events.contains($0.event) }, lost)
        }
    }

    func release() {
        let first = released.withLock { released in
            defer { released = true }
            return !released
        }
        if first { hub.release(id: id, events) }
    }

    deinit { release() }
}
