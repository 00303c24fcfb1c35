public import Logging
public import NIOCore
import NIOPosix
import SallyportHTTP
import Synchronization

/// Where a ``Listener`` listens.
public enum ListenAddress: Sendable, CustomStringConvertible {
    /// A TCP address (port 0: any free port).
    case tcp(host: String, port: Int)
    /// A Unix socket path (an existing file there is replaced).
    case unix(path: String)
    /// A socket already bound and listening, handed over by systemd (socket activation).
    case inherited(descriptor: CInt, address: String)

    public var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): path
        case .inherited(let descriptor, let address): "\(address) (from systemd, descriptor \(descriptor))"
        }
    }
}

/// A listening socket whose accept loop outlives every connection it accepts.
///
/// SwiftNIO's async server channel ends its stream of connections, and so the `for try await` over it, on the
/// first error that reaches it: a child channel option or initializer that fails for one connection would stop
/// the whole listener (issue 26: `setsockopt` refused for the service user stopped the relay on its first
/// connection). Here the initializer's failure closes that connection and is logged with its cause, accept
/// errors (`EMFILE`…) are logged and left to NIO's back-off, and the loop ends only when the listener closes.
/// No child channel option is set: those run before the initializer, where a failure cannot be caught.
///
/// And no connection is lost to a close: one that NIO accepted and set up just as the listener closed is one its
/// stream drops (the stream has ended), left open until some timeout. ``Handoff`` keeps each set-up connection
/// until the loop takes it, and the loop serves those NIO dropped once its stream ends.
public struct Listener<Accepted: Sendable>: Sendable {
    public typealias Address = ListenAddress

    /// An accepted connection, set up, and the event loop it runs on.
    struct Connection: Sendable {
        let value: Accepted
        let eventLoop: any EventLoop
        let id: ObjectIdentifier
    }

    /// What the logs call it ("public", "tunnel", "admin"…).
    public let name: String
    let server: NIOAsyncChannel<Connection?, Never>
    let report: FailureReport
    let handoff: Handoff<Connection>
    let watch: AcceptWatch<Connection>

    /// The listening channel.
    public var channel: any Channel { self.server.channel }

    /// Binds `address` and accepts with `initializer`; `keepalive` turns on TCP keep-alive for every accepted
    /// connection (set on the listening socket, which accepted sockets inherit on Linux). Failures are logged at
    /// most once per `failureLogInterval`.
    public static func bind(
        _ name: String,
        at address: Address,
        backlog: Int32 = 256,
        keepalive: Bool = false,
        group: any EventLoopGroup,
        logger: Logger,
        failureLogInterval: Duration = .seconds(1),
        initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Accepted>
    ) async throws -> Listener {
        let report = FailureReport(listener: name, logger: logger, interval: failureLogInterval)
        let handoff = Handoff<Connection>()
        let watch = AcceptWatch(report: report, handoff: handoff)
        var bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: backlog)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(watch) }
            }
        if case .tcp = address {
            bootstrap = bootstrap.serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        }
        if keepalive {
            bootstrap = bootstrap.serverChannelOption(.socketOption(.so_keepalive), value: 1)
        }
        let guarded: @Sendable (any Channel) -> EventLoopFuture<Connection?> = { channel in
            initializer(channel).flatMapWithEventLoop { value, loop in
                let connection = Connection(value: value, eventLoop: loop, id: ObjectIdentifier(channel))
                // Too late even for the stragglers: nothing will serve it, so it closes now rather than hang.
                guard handoff.setUp(connection, id: connection.id) else {
                    channel.close(promise: nil)
                    return loop.makeSucceededFuture(nil)
                }
                return loop.makeSucceededFuture(connection)
            }.flatMapError { error in
                handoff.settled(ObjectIdentifier(channel))
                report.connectionFailed(error, peer: channel.remoteAddress)
                channel.close(promise: nil)
                return channel.eventLoop.makeSucceededFuture(nil)
            }
        }
        let server: NIOAsyncChannel<Connection?, Never>
        switch address {
        case .tcp(let host, let port):
            server = try await bootstrap.bind(host: host, port: port, childChannelInitializer: guarded)
        case .unix(let path):
            server = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true, childChannelInitializer: guarded)
        case .inherited(let descriptor, _):
            server = try await bootstrap.bind(descriptor, childChannelInitializer: guarded)
        }
        return Listener(name: name, server: server, report: report, handoff: handoff, watch: watch)
    }

    /// Accepts until the listener is closed, each connection served by `serve` in a task of its own (on the
    /// connection's event loop). Throws only if the listener itself failed (it closed without ``close()``).
    public func run(_ serve: @escaping @Sendable (Accepted) async -> Void) async throws {
        try await self.server.executeThenClose { inbound in
            try await withThrowingDiscardingTaskGroup { connections in
                for try await accepted in inbound {
                    guard let accepted, self.handoff.take(accepted.id) else { continue }
                    connections.addTask(executorPreference: EventLoopExecutor(accepted.eventLoop)) { await serve(accepted.value) }
                }
                for straggler in await self.handoff.finish() {
                    connections.addTask(executorPreference: EventLoopExecutor(straggler.eventLoop)) { await serve(straggler.value) }
                }
            }
        }
        guard self.watch.closing else {
            throw ListenerFailed(description: "the \(self.name) listener closed by itself (see the errors logged before); restart the service")
        }
    }

    /// Stops accepting; connections accepted already are set up and served. Returns once the listening socket
    /// is closed.
    ///
    /// NIO closes a connection it accepted whose set-up ends after its listening channel closed, and a socket
    /// from systemd queues connections for the next process meanwhile: so no more reads are issued, and the
    /// channel closes on its own event loop (where accepts run) at a moment no accepted connection is still
    /// being set up. Nothing accepted is lost, and nothing queued is taken.
    public func close() async {
        self.watch.stopAccepting()
        let channel = self.server.channel
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let closed = try? await channel.eventLoop.submit { () -> Bool in
                guard self.handoff.settingUp == 0 else { return false }
                channel.close(promise: nil)
                return true
            }.get()
            if closed != false { break }
            try? await Task.sleep(for: .milliseconds(5))
        }
        try? await channel.closeFuture.get()
        if channel.isActive { try? await channel.close() }
    }

    /// Stops accepting, without waiting (as ``close()``, in a task of its own).
    public func startClosing() {
        Task { await self.close() }
    }
}

/// A listener closed without being asked to: the service cannot go on serving.
public struct ListenerFailed: Error, CustomStringConvertible {
    public let description: String
}

/// Connections from `accept(2)` to the accept loop taking them. Set-ups still running when the loop's stream
/// ends are waited for (they end with their handshake timeout at the latest), and what the stream did not
/// deliver is given to the loop once more.
final class Handoff<Connection: Sendable>: Sendable {
    private struct State {
        var setting: Set<ObjectIdentifier> = []
        var ready: [ObjectIdentifier: Connection] = [:]
        var finished = false
    }

    private let state = Mutex(State())

    /// Connections accepted and still being set up.
    var settingUp: Int { self.state.withLock { $0.setting.count } }

    /// A connection was accepted (on the listening channel's loop).
    func accepted(_ id: ObjectIdentifier) { _ = self.state.withLock { $0.setting.insert(id) } }

    /// A set-up ended without a connection to serve (it failed, or the connection closed first). Once only.
    func settled(_ id: ObjectIdentifier) { _ = self.state.withLock { $0.setting.remove(id) } }

    /// A set-up succeeded; false when the loop is gone and the connection cannot be served.
    func setUp(_ connection: Connection, id: ObjectIdentifier) -> Bool {
        self.state.withLock { state in
            state.setting.remove(id)
            guard !state.finished else { return false }
            state.ready[id] = connection
            return true
        }
    }

    /// The loop takes a connection its stream delivered; false if it was served already.
    func take(_ id: ObjectIdentifier) -> Bool { self.state.withLock { $0.ready.removeValue(forKey: id) != nil } }

    /// Once the stream ended: waits for set-ups still running, then returns every connection not taken.
    func finish() async -> [Connection] {
        while true {
            let done: [Connection]? = self.state.withLock { state in
                guard state.setting.isEmpty else { return nil }
                state.finished = true
                defer { state.ready = [:] }
                return Array(state.ready.values)
            }
            if let done { return done }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// Logs a listener's failures: one line per failed connection with its cause, but at most one per `interval` (a
/// second), so a storm of them (a scan, a full file table) says how many it left out instead of filling the log.
final class FailureReport: Sendable {
    private struct State {
        var lastLogged: ContinuousClock.Instant?
        var suppressed = 0
    }

    let listener: String
    let logger: Logger
    let interval: Duration
    private let state = Mutex(State())

    init(listener: String, logger: Logger, interval: Duration) {
        self.listener = listener
        self.logger = logger
        self.interval = interval
    }

    func connectionFailed(_ error: any Error, peer: SocketAddress?) {
        self.log("connection closed: it could not be set up", cause: error, metadata: ["peer": "\(peer.map { "\($0)" } ?? "unknown")"])
    }

    func acceptFailed(_ error: any Error) {
        var advice = "the listener goes on"
        if let error = error as? IOError, [EMFILE, ENFILE].contains(error.errnoCode) {
            advice = "too many open files: accepting pauses for a second; raise the limit (LimitNOFILE=) or lower public.limits.maxConnections"
        }
        self.log("could not accept a connection", cause: error, metadata: ["advice": "\(advice)"])
    }

    private func log(_ message: String, cause: any Error, metadata: Logger.Metadata) {
        let now = ContinuousClock.now
        let suppressed: Int? = self.state.withLock { state in
            if let last = state.lastLogged, now - last < self.interval {
                state.suppressed += 1
                return nil
            }
            defer { state.suppressed = 0 }
            state.lastLogged = now
            return state.suppressed
        }
        guard let suppressed else { return }
        var metadata = metadata
        metadata["listener"] = "\(self.listener)"
        metadata["error"] = "\(cause)"
        if suppressed > 0 { metadata["not_logged_since"] = "\(suppressed)" }
        self.logger.warning("\(message)", metadata: metadata)
    }
}

/// First on the listening channel, where `accept(2)`'s results arrive: counts each accepted connection into
/// the ``Handoff`` until its set-up ends, drops reads once the listener is closing (so no new batch is
/// accepted), and logs accept errors. I/O errors go on to NIO's `AcceptBackoffHandler`, which pauses accepting
/// on a full file table and swallows them; any other error stops here, since past those handlers it would end
/// the stream of connections.
final class AcceptWatch<Connection: Sendable>: ChannelDuplexHandler, Sendable {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel
    typealias OutboundIn = Never

    let report: FailureReport
    let handoff: Handoff<Connection>
    private let closingFlag = Atomic<Bool>(false)

    /// Whether ``Listener/close()`` was asked for: reads stop, and the loop's end is no failure.
    var closing: Bool { self.closingFlag.load(ordering: .relaxed) }

    init(report: FailureReport, handoff: Handoff<Connection>) {
        self.report = report
        self.handoff = handoff
    }

    func stopAccepting() { self.closingFlag.store(true, ordering: .relaxed) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let accepted = self.unwrapInboundIn(data)
        let id = ObjectIdentifier(accepted)
        self.handoff.accepted(id)
        // NIO closes it if it cannot be set up or delivered: it is settled then too.
        accepted.closeFuture.whenComplete { [handoff] _ in handoff.settled(id) }
        context.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        if !self.closing { context.read() }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.report.acceptFailed(error)
        if error is IOError { context.fireErrorCaught(error) }
    }
}
