import CSluiceShims
import Logging
import NIOCore
import NIOPosix
import SluiceSystem
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

public struct ControlServerConfiguration: Sendable, Equatable {
    public var socketPath: String
    /// Permission bits of the socket file (connect needs write permission).
    public var socketMode: UInt32
    /// Group that owns the socket file; nil keeps the daemon's group.
    public var socketGroup: UInt32?
    /// Members of this group are `admin`; nil means only root is.
    public var adminGroup: UInt32?
    public var maxClients: Int
    /// A connection that neither reads nor writes this long is closed.
    public var idleTimeout: Duration

    public init(
        socketPath: String = ControlProtocol.defaultSocketPath, socketMode: UInt32 = 0o660,
        socketGroup: UInt32? = nil, adminGroup: UInt32? = nil, maxClients: Int = 64,
        idleTimeout: Duration = .seconds(300)
    ) {
        self.socketPath = socketPath
        self.socketMode = socketMode
        self.socketGroup = socketGroup
        self.adminGroup = adminGroup
        self.maxClients = maxClients
        self.idleTimeout = idleTimeout
    }
}

public struct ControlServerError: Error, CustomStringConvertible {
    public var description: String
}

/// The UNIX control socket: protocol v1 over SwiftNIO. Commands come from a
/// ``CommandRegistry``; handlers run as tasks, so a blocking handler would
/// starve the loop: handlers hand blocking work to a thread pool.
public final class ControlServer: Sendable {
    public let configuration: ControlServerConfiguration
    public let registry: CommandRegistry
    private let logger: Logger
    private let group: EventLoopGroup
    private let state = Mutex(State())
    private let statsProvider = Mutex<(@Sendable () async -> JSONValue)?>(nil)
    private let listeningHandler = Mutex<(@Sendable () -> Void)?>(nil)

    private struct State {
        var statistics = ControlServerStatistics()
        var nextConnectionID = 1
        var serverChannel: Channel?
        var connections: [Int: Channel] = [:]
        var stopped = false
        var publishedInode: UInt?
    }

    public init(
        configuration: ControlServerConfiguration, registry: CommandRegistry, logger: Logger,
        group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.configuration = configuration
        self.registry = registry
        self.logger = logger
        self.group = group
        registerBuiltins()
    }

    public var statistics: ControlServerStatistics { state.withLock { $0.statistics } }

    /// Called once ``run()`` has published the socket at its path, so that
    /// a supervisor (systemd's READY=1) hears "ready" only when clients can connect.
    public func onListening(_ handler: @escaping @Sendable () -> Void) {
        listeningHandler.withLock { $0 = handler }
    }

    /// What `stats.subscribe` streams and `stats.get` can embed.
    public func setStatisticsProvider(_ provider: @escaping @Sendable () async -> JSONValue) {
        statsProvider.withLock { $0 = provider }
    }

    /// Binds the socket and serves until ``stop()`` or cancellation.
    /// The socket appears at its path only once its mode and group are set.
    public func run() async throws {
        let path = configuration.socketPath
        try prepareSocketDirectory(for: path)
        try removeStaleSocket(at: path)
        let stagingPath = path + ".\(getpid()).new"
        unlink(stagingPath)
        let lineLimit = ControlProtocol.maxLineBytes
        let idle = TimeAmount.nanoseconds(
            Int64(configuration.idleTimeout.components.seconds) * 1_000_000_000
                + configuration.idleTimeout.components.attoseconds / 1_000_000_000)
        let adminGroup = configuration.adminGroup
        let serverChannel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 128)
            .childChannelOption(.allowRemoteHalfClosure, value: false)
            .bind(unixDomainSocketPath: stagingPath) { channel in
                ControlServer.peerIdentity(of: channel, adminGroup: adminGroup).flatMapThrowing { peer in
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(allTimeout: idle))
                    try sync.addHandler(IdleConnectionCloser())
                    try sync.addHandler(ByteToMessageHandler(LineFrameDecoder(maxLength: lineLimit)))
                    let connection = try NIOAsyncChannel<LineFrame, ByteBuffer>(
                        wrappingChannelSynchronously: channel)
                    return Accepted(connection: connection, channel: channel, peer: peer)
                }
            }
        do {
            try publishSocket(staging: stagingPath, final: path)
        } catch {
            try? await serverChannel.channel.close()
            unlink(stagingPath)
            throw error
        }
        let alreadyStopped = state.withLock { state -> Bool in
            state.serverChannel = serverChannel.channel
            return state.stopped
        }
        if alreadyStopped { try? await serverChannel.channel.close() }
        logger.info("control socket listening", metadata: ["path": "\(path)"])
        if !alreadyStopped { listeningHandler.withLock { $0 }?() }
        defer {
            unlinkIfOurs(path)
        }
        do {
            try await withTaskCancellationHandler {
                try await withThrowingDiscardingTaskGroup { tasks in
                    try await serverChannel.executeThenClose { inbound in
                        for try await accepted in inbound {
                            tasks.addTask { await self.serve(accepted) }
                        }
                    }
                }
            } onCancel: {
                self.stop()
            }
        } catch {
            // Closing the channels on stop surfaces as an error here; a stop
            // that was asked for is a normal return.
            if !state.withLock({ $0.stopped }) { throw error }
        }
    }

    /// Closes the listening socket and every connection; ``run()`` returns.
    public func stop() {
        let channels = state.withLock { state -> [Channel] in
            state.stopped = true
            return Array(state.connections.values) + (state.serverChannel.map { [$0] } ?? [])
        }
        for channel in channels { channel.close(promise: nil) }
    }

    private struct Accepted: Sendable {
        var connection: NIOAsyncChannel<LineFrame, ByteBuffer>
        var channel: Channel
        var peer: PeerIdentity
    }

    private func serve(_ accepted: Accepted) async {
        let admitted = state.withLock { state -> Int? in
            state.statistics.connectionsTotal += 1
            guard !state.stopped, state.connections.count < configuration.maxClients else {
                state.statistics.connectionsRejectedBusy += 1
                return nil
            }
            let id = state.nextConnectionID
            state.nextConnectionID += 1
            state.connections[id] = accepted.channel
            state.statistics.clients = state.connections.count
            return id
        }
        guard let connectionID = admitted else {
            await reject(accepted)
            return
        }
        defer {
            state.withLock { state in
                state.connections[connectionID] = nil
                state.statistics.clients = state.connections.count
            }
        }
        let peer = accepted.peer
        do {
            try await accepted.connection.executeThenClose { inbound, outbound in
                let session = ControlSession(connectionID: connectionID, writer: outbound)
                defer { session.stopAllStreams() }
                try await session.send(ControlMessage.greeting(pid: getpid(), level: peer.level))
                for try await frame in inbound {
                    switch frame {
                    case .oversize:
                        self.count(error: .badRequest)
                        try await session.send(ControlMessage.failure(id: .null, error: .badRequest(
                            "request line exceeds \(ControlProtocol.maxLineBytes) bytes; closing the connection")))
                        return
                    case .line(let line):
                        if line.readableBytesView.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
                        let reply = await self.handle(line: line.readableBytesView, peer: peer, session: session)
                        do {
                            try await session.send(reply)
                        } catch {
                            session.runAfterReplyActions()
                            throw error
                        }
                        session.runAfterReplyActions()
                    }
                }
            }
        } catch {
            logger.debug("control connection ended", metadata: ["error": "\(error)", "pid": "\(peer.pid)"])
        }
    }

    private func reject(_ accepted: Accepted) async {
        logger.warning("control client refused: too many clients", metadata: [
            "max_clients": "\(configuration.maxClients)", "pid": "\(accepted.peer.pid)",
        ])
        try? await accepted.connection.executeThenClose { _, outbound in
            let error = ControlError.busy(
                "too many clients (max_clients = \(self.configuration.maxClients)); try again later")
            try await outbound.write(ByteBuffer(string: ControlMessage.failure(id: .null, error: error).serialized() + "\n"))
        }
    }

    /// Parses and runs one request line; always produces a reply.
    public func handle(line: some Collection<UInt8>, peer: PeerIdentity, session: ControlSession) async -> JSONValue {
        let request: ControlRequest
        switch ControlRequest.parse(line: line) {
        case .success(let parsed): request = parsed
        case .failure(let failure):
            count(error: failure.error.code)
            return ControlMessage.failure(id: failure.id, error: failure.error)
        }
        do {
            let result = try await execute(request, peer: peer, session: session)
            state.withLock { $0.statistics.commandsServed += 1 }
            return ControlMessage.success(id: request.id, result: result)
        } catch {
            let controlError = (error as? ControlError)
                ?? (error as? ControlErrorConvertible)?.controlError
                ?? .internal("\(error)")
            if controlError.code == .internal {
                logger.error("command failed", metadata: ["cmd": "\(request.command)", "error": "\(error)"])
            }
            count(error: controlError.code)
            return ControlMessage.failure(id: request.id, error: controlError)
        }
    }

    private func execute(_ request: ControlRequest, peer: PeerIdentity, session: ControlSession) async throws -> JSONValue {
        guard let command = registry.command(named: request.command) else {
            throw ControlError(.unknownCommand, "unknown command \"\(request.command.prefix(64))\"; \"help\" lists the commands")
        }
        guard peer.level >= command.spec.level else {
            throw ControlError(.permissionDenied,
                "\(command.spec.name) needs the admin level; uid \(peer.uid) has the read level "
                    + "(admin: root\(configuration.adminGroup.map { " or members of gid \($0)" } ?? ""))")
        }
        let arguments = Arguments(command: command.spec.name, values: request.arguments)
        try arguments.checkKnown(against: command.spec)
        let context = CommandContext(peer: peer, requestID: request.id, session: session)
        return try await command.handler(context, arguments)
    }

    private func count(error code: ErrorCode) {
        state.withLock { $0.statistics.errorsByCode[code.rawValue, default: 0] += 1 }
    }

    // MARK: Built-in commands

    private func registerBuiltins() {
        let registry = self.registry
        registry.register(Methods.Help.self) { _, _ in .init(commands: registry.commands.map(\.spec)) }
        registry.register(Methods.StatsSubscribe.self) { [weak self] request, context in
            let interval = request.intervalMilliseconds ?? 1000
            let rates = RateTracker()
            context.session.startStream(name: "stats", id: context.requestID, interval: .milliseconds(interval)) {
                [weak self] in
                guard let provider = self?.statsProvider.withLock({ $0 }) else { return nil }
                return rates.annotate(await provider())
            }
            return .init(subscribed: "stats", intervalMilliseconds: interval)
        }
        registry.register(Methods.StatsUnsubscribe.self) { _, context in
            .init(unsubscribed: context.session.stopStream(name: "stats"))
        }
    }

    // MARK: Socket file

    private static func peerIdentity(of channel: Channel, adminGroup: UInt32?) -> EventLoopFuture<PeerIdentity> {
        guard let channel = channel as? SocketOptionProvider & Channel else {
            return channel.eventLoop.makeFailedFuture(ControlServerError(description: "no socket options on \(channel)"))
        }
        let credentials: EventLoopFuture<sluice_ucred> = channel.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(sluice_so_peercred()))
        return credentials.flatMap { cred in
            let groups: EventLoopFuture<sluice_peer_groups> = channel.unsafeGetSocketOption(
                level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(sluice_so_peergroups()))
            return groups.map { PeerIdentity.groups(from: $0) }
                // More groups than the buffer holds (ERANGE): judge by the primary group alone.
                .recover { _ in [] }
                .map { PeerIdentity(pid: cred.pid, uid: cred.uid, gid: cred.gid, groups: $0, adminGroup: adminGroup) }
        }
    }

    private func prepareSocketDirectory(for path: String) throws {
        guard path.utf8.count < 108 else {
            throw ControlServerError(description: "socket path \(path) is longer than 107 bytes (sun_path)")
        }
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        guard !directory.isEmpty else { return }
        // Like systemd's RuntimeDirectory= in production: 0755, the socket's own mode guards it.
        do {
            try Directory.create(directory, mode: 0o755)
        } catch {
            throw ControlServerError(description: "cannot create the socket's directory: \(error)")
        }
    }

    /// A socket file left by a crashed daemon is removed; one that answers
    /// belongs to a running daemon, and we refuse to steal it.
    private func removeStaleSocket(at path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw ControlServerError(description: "\(path) exists and is not a socket; not removing it")
        }
        if let client = try? ControlClient(socketPath: path, timeout: .seconds(2)) {
            client.close()
            throw ControlServerError(description: "another sluiced is already listening on \(path)")
        }
        unlink(path)
    }

    private func publishSocket(staging: String, final path: String) throws {
        if let gid = configuration.socketGroup, chown(staging, UInt32.max, gid) != 0 {
            throw ControlServerError(description: "cannot give \(path) to gid \(gid): \(currentErrno)")
        }
        if chmod(staging, mode_t(configuration.socketMode)) != 0 {
            throw ControlServerError(description: "cannot chmod \(path): \(currentErrno)")
        }
        if rename(staging, path) != 0 {
            throw ControlServerError(description: "cannot move the socket to \(path): \(currentErrno)")
        }
        var info = stat()
        if lstat(path, &info) == 0 {
            state.withLock { $0.publishedInode = info.st_ino }
        }
    }

    /// Removes the socket file only if it is still the one we published: a
    /// second daemon started with another config may have replaced it.
    private func unlinkIfOurs(_ path: String) {
        guard let published = state.withLock({ $0.publishedInode }) else { return }
        var info = stat()
        if lstat(path, &info) == 0, info.st_ino == published { unlink(path) }
    }
}

/// Errors from lower layers (NIC, plugins, data path) that know their
/// protocol error code.
public protocol ControlErrorConvertible: Error {
    var controlError: ControlError { get }
}
