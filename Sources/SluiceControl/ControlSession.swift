import NIOCore
import Synchronization

/// One client connection: writes reply and event lines, and owns the
/// streams (`stats.subscribe`, `trace.subscribe`) the client started, which
/// end with the connection.
public final class ControlSession: Sendable {
    public let connectionID: Int
    private let writer: NIOAsyncChannelOutboundWriter<ByteBuffer>?
    private let streams = Mutex<[String: Task<Void, Never>]>([:])
    private let pendingAfterReply = Mutex<[@Sendable () -> Void]>([])

    init(connectionID: Int, writer: NIOAsyncChannelOutboundWriter<ByteBuffer>?) {
        self.connectionID = connectionID
        self.writer = writer
    }

    /// A session with no connection, for in-process calls.
    public static func detached() -> ControlSession { ControlSession(connectionID: 0, writer: nil) }

    /// Sends one JSON line. Suspends while the client is not reading (NIO
    /// back-pressure), so a stalled client holds only its own bounded buffer.
    public func send(_ message: JSONValue) async throws {
        guard let writer else { return }
        var line = message.serialized()
        line.append("\n")
        try await writer.write(ByteBuffer(string: line))
    }

    /// Starts (or replaces) the stream `name`: `produce` is called every
    /// `interval` and each value is sent as an event tagged with `id`.
    public func startStream(
        name: String, id: JSONValue, interval: Duration,
        produce: @escaping @Sendable () async -> JSONValue?
    ) {
        let task = Task { [weak self] in
            while !Task.isCancelled {
                do { try await Task.sleep(for: interval) } catch { return }
                guard let self, let data = await produce() else { continue }
                do {
                    try await self.send(ControlMessage.event(id: id, name: name, data: data))
                } catch {
                    return
                }
            }
        }
        streams.withLock { $0.updateValue(task, forKey: name) }?.cancel()
    }

    /// Stops the stream `name`; false if none was running.
    @discardableResult
    public func stopStream(name: String) -> Bool {
        guard let task = streams.withLock({ $0.removeValue(forKey: name) }) else { return false }
        task.cancel()
        return true
    }

    /// Runs `action` once the reply to the current request has been written
    /// (e.g. `shutdown` replies before the daemon closes connections).
    public func afterReplySent(_ action: @escaping @Sendable () -> Void) {
        pendingAfterReply.withLock { $0.append(action) }
    }

    func runAfterReplyActions() {
        let actions = pendingAfterReply.withLock { pending in
            defer { pending.removeAll() }
            return pending
        }
        for action in actions { action() }
    }

    public var activeStreams: [String] { streams.withLock { $0.keys.sorted() } }

    func stopAllStreams() {
        let tasks = streams.withLock { streams in
            defer { streams.removeAll() }
            return Array(streams.values)
        }
        for task in tasks { task.cancel() }
    }
}
