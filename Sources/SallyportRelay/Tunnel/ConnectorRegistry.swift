import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP2
import NIOHTTPTypes
import NIOHTTPTypesHTTP2
import SallyportHTTP
import SallyportTunnel
import SallyportWire
import Synchronization

/// One connector's tunnel connection as the relay sees it.
final class TunnelConnection: Sendable {
    /// A stream to the connector carrying one request.
    typealias Stream = NIOAsyncChannel<HTTPResponsePart, HTTPRequestPart>

    /// Unique within this relay process.
    let id: UInt64
    /// The registered connector's id (from its certificate, through the registry).
    let connectorID: String
    /// The connector's registered name, for logs.
    let connector: String
    /// The group it serves: the registry's when the connection was made (a move reconnects).
    let group: String
    /// When the connection was made.
    let connectedAt = Date()
    /// Peer address, for logs.
    let remoteAddress: String

    let channel: any Channel
    /// Opens request streams (``openStream(_:)``).
    let streams: NIOHTTP2Handler.StreamMultiplexer
    /// Whether the connector still answers (``TunnelLivenessHandler``).
    let health: TunnelHealth
    private let inFlight = Atomic<Int>(0)
    private let latency = Mutex(PeakEWMA())
    private let acked = Atomic<UInt64>(0)
    private let isDraining = Atomic<Bool>(false)
    private let outbox: AsyncStream<ControlMessage>.Continuation

    init(
        id: UInt64, connectorID: String, connector: String, group: String, remoteAddress: String, channel: any Channel,
        streams: NIOHTTP2Handler.StreamMultiplexer, health: TunnelHealth, outbox: AsyncStream<ControlMessage>.Continuation
    ) {
        self.id = id
        self.connectorID = connectorID
        self.outbox = outbox
        self.connector = connector
        self.group = group
        self.remoteAddress = remoteAddress
        self.channel = channel
        self.streams = streams
        self.health = health
    }

    /// Requests currently in flight on this connection.
    var activeRequests: Int { self.inFlight.load(ordering: .relaxed) }
    /// The newest configuration generation the connector has applied.
    var appliedGeneration: UInt64 { self.acked.load(ordering: .acquiring) }
    /// Whether the connector announced it is going away.
    var draining: Bool { self.isDraining.load(ordering: .relaxed) }
    /// Whether the connector has gone quiet: new requests go elsewhere while another tunnel answers.
    var suspect: Bool { self.health.isSuspect }

    func markApplied(_ generation: UInt64) {
        var current = self.acked.load(ordering: .relaxed)
        while generation > current {
            let (exchanged, original) = self.acked.compareExchange(expected: current, desired: generation, ordering: .acquiringAndReleasing)
            if exchanged { break }
            current = original
        }
    }

    func markDraining() { self.isDraining.store(true, ordering: .relaxed) }

    /// Queues a control message to the connector (sent by the connection's control loop).
    func send(_ message: ControlMessage) { self.outbox.yield(message) }

    /// Opens a request stream whose pipeline ends in `handler` (made on the connection's event loop). The
    /// caller must call ``finished()`` once the stream is done, also when opening it failed.
    func openStream<Handler: ChannelHandler>(
        _ handler: @escaping @Sendable () -> Handler
    ) -> EventLoopFuture<(channel: any Channel, handler: NIOLoopBound<Handler>)> {
        self.inFlight.add(1, ordering: .relaxed)
        let promise = self.channel.eventLoop.makePromise(of: (any Channel).self)
        self.streams.createStreamChannel(promise: promise) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTPClientCodec())
                try channel.pipeline.syncOperations.addHandler(handler())
            }
        }
        // On the connection's event loop, which is its streams'.
        return promise.futureResult.flatMapThrowing { channel in
            (channel, NIOLoopBound(try channel.pipeline.syncOperations.handler(type: Handler.self), eventLoop: channel.eventLoop))
        }
    }

    /// Balances ``openStream(_:)``.
    func finished() { self.inFlight.subtract(1, ordering: .relaxed) }

    /// Records how long the connector took to start answering a request.
    func observe(latency: Duration) { self.latency.withLock { $0.observe(latency, at: .now) } }

    /// The connector's recent latency on this connection, in seconds (peak-weighted, decaying).
    var recentLatency: Double { self.latency.withLock { $0.value(at: .now) } }
}

/// The relay's registry of connector tunnels.
typealias ConnectorRegistry = TunnelRegistry<TunnelConnection>

/// The live tunnel connections, by connector group, and the choice of one for each request.
final class TunnelRegistry<Connection: TunnelCandidate>: Sendable {
    private struct State: Sendable {
        var groups: [String: [Connection]] = [:]
        var cursor = 0
        /// Bumped whenever a connection is added or applies a configuration: what a waiting pick waits for.
        var changes: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter: UInt64 = 0

        /// Marks a change and hands back every waiter to resume (outside the lock).
        mutating func takeWaiters() -> [CheckedContinuation<Void, Never>] {
            self.changes &+= 1
            defer { self.waiters = [:] }
            return Array(self.waiters.values)
        }
    }

    private let state = Mutex(State())
    private let nextID = Atomic<UInt64>(1)

    /// Creates an empty registry.
    init() {}

    func makeID() -> UInt64 { self.nextID.wrappingAdd(1, ordering: .relaxed).oldValue }

    func add(_ connection: Connection) {
        let waiters = self.state.withLock { state in
            state.groups[connection.group, default: []].append(connection)
            return state.takeWaiters()
        }
        for waiter in waiters { waiter.resume() }
    }

    func remove(_ connection: Connection) {
        self.state.withLock { state in
            state.groups[connection.group]?.removeAll { $0 === connection }
            if state.groups[connection.group]?.isEmpty == true { state.groups[connection.group] = nil }
        }
    }

    /// Records that `connection` now serves the configuration of `generation` (of this relay's epoch).
    func applied(_ generation: UInt64, on connection: Connection) {
        connection.markApplied(generation)
        let waiters = self.state.withLock { $0.takeWaiters() }
        for waiter in waiters { waiter.resume() }
    }

    /// The connections of a group (for pushing configuration).
    func connections(group: String) -> [Connection] {
        self.state.withLock { $0.groups[group] ?? [] }
    }

    /// Every connection, for status and shutdown.
    var all: [Connection] { self.state.withLock { Array($0.groups.values.joined()) } }

    /// Picks a connection of `group` for a request of an app at `version` (see ``TunnelChoice``), skipping
    /// `excluding` (connections that already failed this request) and, while others can serve, the connectors in
    /// `avoiding` (those that cannot reach the app's backend). When the group's connections are only still
    /// receiving the app's configuration, waits up to `wait` for one to apply it.
    func pick(
        group: String, app version: AppCatalog.AppVersion, excluding: [UInt64] = [], avoiding: Set<String> = [], near: ObjectIdentifier? = nil,
        wait: Duration = .zero, awaitFirst: Bool = false
    ) async -> Connection? {
        let deadline = ContinuousClock.now + wait
        while true {
            let (outcome, seen, empty) = self.choose(group: group, app: version, excluding: excluding, avoiding: avoiding, near: near)
            switch outcome {
            case .chosen(let connection):
                return connection
            case .none:
                // `awaitFirst`: no connection of the group yet, but one is expected (a relay just restarted).
                guard awaitFirst, empty, ContinuousClock.now < deadline, !Task.isCancelled else { return nil }
                await self.waitForChange(after: seen, until: deadline)
            case .configurationPending:
                guard ContinuousClock.now < deadline, !Task.isCancelled else { return nil }
                await self.waitForChange(after: seen, until: deadline)
            }
        }
    }

    /// ``pick(group:app:excluding:avoiding:near:wait:awaitFirst:)`` without waiting: what the group's connections
    /// offer now.
    func pickNow(
        group: String, app version: AppCatalog.AppVersion, excluding: [UInt64] = [], avoiding: Set<String> = [], near: ObjectIdentifier? = nil
    ) -> TunnelChoice.Outcome<Connection> {
        self.choose(group: group, app: version, excluding: excluding, avoiding: avoiding, near: near).outcome
    }

    private func choose(
        group: String, app version: AppCatalog.AppVersion, excluding: [UInt64], avoiding: Set<String>, near: ObjectIdentifier?
    ) -> (outcome: TunnelChoice.Outcome<Connection>, seen: UInt64, empty: Bool) {
        self.state.withLock { state in
            let candidates = state.groups[group] ?? []
            state.cursor &+= 1
            let outcome = TunnelChoice.choose(among: candidates, app: version, excluding: excluding, avoiding: avoiding, near: near, start: state.cursor)
            return (outcome, state.changes, candidates.isEmpty)
        }
    }

    /// Returns once a connection was added or applied a configuration after `seen`, or at `deadline`.
    private func waitForChange(after seen: UInt64, until deadline: ContinuousClock.Instant) async {
        let id = self.state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        let timeout = Task {
            try? await Task.sleep(until: deadline)
            self.wake(id)
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let changed = self.state.withLock { state -> Bool in
                    // A change, the deadline or a cancellation that came before this point would never wake us.
                    guard state.changes == seen, !Task.isCancelled, ContinuousClock.now < deadline else { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if changed { continuation.resume() }
            }
        } onCancel: {
            self.wake(id)
        }
        timeout.cancel()
    }

    private func wake(_ id: UInt64) {
        self.state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
    }
}

/// What a tunnel connection looks like to the registry: enough to choose without touching a socket.
protocol TunnelCandidate: AnyObject, Sendable {
    /// Unique within this relay process.
    var id: UInt64 { get }
    /// The registered connector it belongs to.
    var connectorID: String { get }
    /// The connector group it serves.
    var group: String { get }
    /// The newest configuration generation (of this relay's epoch) the connector has applied.
    var appliedGeneration: UInt64 { get }
    /// Whether the connector announced it is going away.
    var draining: Bool { get }
    /// Whether the connector has stopped answering PINGs for a while (it may be cut off).
    var suspect: Bool { get }
    /// Requests in flight on it.
    var activeRequests: Int { get }
    /// Recent time to a response head on it, in seconds (``PeakEWMA``); 0 before any.
    var recentLatency: Double { get }
    /// Records an applied generation (never goes back).
    func markApplied(_ generation: UInt64)
    /// The event loop it runs on (`ObjectIdentifier` of the channel's).
    var loop: ObjectIdentifier { get }
}

extension TunnelConnection: TunnelCandidate {
    var loop: ObjectIdentifier { ObjectIdentifier(self.channel.eventLoop) }
}

/// The choice of a tunnel connection for one request: a pure function of the group's connections.
///
/// A connection that has applied the app's newest version is preferred. Until one has, a connection that
/// serves an earlier version of the app keeps serving it (an edit never makes an app unavailable). Among
/// equals, the one with the fewest requests in flight wins, and ties rotate from `start`. Draining and
/// excluded connections are never chosen; a suspect one (silent for a while), or one of a connector in
/// `avoiding` (it cannot reach the app's backend), only when nothing else can serve.
enum TunnelChoice {
    enum Outcome<Candidate> {
        case chosen(Candidate)
        /// Connections are up but none has the app yet: its configuration is on its way.
        case configurationPending
        /// No connection can take the request.
        case none
    }

    static func choose<Candidate: TunnelCandidate>(
        among candidates: [Candidate], app version: AppCatalog.AppVersion, excluding: [UInt64], avoiding: Set<String> = [],
        near: ObjectIdentifier? = nil, start: Int
    ) -> Outcome<Candidate> {
        guard !candidates.isEmpty else { return .none }
        let preferred = candidates.filter { !$0.suspect && !avoiding.contains($0.connectorID) }
        if preferred.count < candidates.count, !preferred.isEmpty {
            let outcome = Self.choose(among: preferred, app: version, excluding: excluding, near: near, start: start)
            if case .chosen = outcome { return outcome }
        }
        var newest: [Candidate] = []
        var earlier: [Candidate] = []
        var pending = false
        for candidate in candidates where !candidate.draining && !excluding.contains(candidate.id) {
            if candidate.appliedGeneration >= version.changed {
                newest.append(candidate)
            } else if candidate.appliedGeneration >= version.introduced {
                earlier.append(candidate)
            } else {
                pending = true
            }
        }
        if let chosen = Self.byConnector(newest.isEmpty ? earlier : newest, near: near, start: start) { return .chosen(chosen) }
        return pending ? .configurationPending : .none
    }

    /// Power of two choices by connector: of two connectors (a rotating pair), the one with the lower cost,
    /// its requests in flight on all its connections plus one, times its recent latency; then its least busy
    /// connection, unless one on the caller's event loop (`near`) carries at most ``nearSlack`` more: the
    /// request then crosses no thread. A slow or overloaded connector gets less; equals take turns.
    static func byConnector<Candidate: TunnelCandidate>(_ eligible: [Candidate], near: ObjectIdentifier? = nil, start: Int) -> Candidate? {
        guard !eligible.isEmpty else { return nil }
        var connectors: [String: [Candidate]] = [:]
        var order: [String] = []
        for candidate in eligible {
            if connectors[candidate.connectorID] == nil { order.append(candidate.connectorID) }
            connectors[candidate.connectorID, default: []].append(candidate)
        }
        func cost(_ id: String) -> Double {
            let tunnels = connectors[id]!
            let outstanding = tunnels.reduce(0) { $0 + $1.activeRequests }
            // A floor of 1 ms: a connector not yet measured costs as a fast one, and load still counts.
            let latency = max(tunnels.map(\.recentLatency).max() ?? 0, 0.001)
            return Double(outstanding + 1) * latency
        }
        let count = order.count
        var chosen = order[start % count]
        if count > 1 {
            let other = order[(start + 1 + (start / count) % (count - 1)) % count]
            if cost(other) < cost(chosen) { chosen = other }
        }
        let tunnels = connectors[chosen]!
        let first = start % tunnels.count
        var best = tunnels[first]
        for offset in 1..<max(tunnels.count, 1) {
            let tunnel = tunnels[(first + offset) % tunnels.count]
            if tunnel.activeRequests < best.activeRequests { best = tunnel }
        }
        if let near, best.loop != near,
            let local = tunnels.filter({ $0.loop == near }).min(by: { $0.activeRequests < $1.activeRequests }),
            local.activeRequests <= best.activeRequests + Self.nearSlack
        {
            return local
        }
        return best
    }

    /// How many more requests in flight a tunnel connection on the caller's event loop may carry and still win.
    static let nearSlack = 16
}

/// A peak-weighted moving average of latency (as Finagle's and Linkerd's balancers keep): a slower sample
/// counts at once, faster ones pull it down over ``decay``, and it fades while nothing is measured.
struct PeakEWMA {
    static let decay: Double = 10  // seconds
    private var average: Double = 0
    private var stamp: ContinuousClock.Instant?

    mutating func observe(_ latency: Duration, at now: ContinuousClock.Instant) {
        let sample = Double(latency.components.seconds) + Double(latency.components.attoseconds) / 1e18
        let current = self.value(at: now)
        if sample > current {
            self.average = sample
        } else {
            let elapsed = self.stamp.map { Self.seconds(now - $0) } ?? Self.decay
            let weight = exp(-elapsed / Self.decay)
            self.average = current * weight + sample * (1 - weight)
        }
        self.stamp = now
    }

    func value(at now: ContinuousClock.Instant) -> Double {
        guard let stamp else { return 0 }
        return self.average * exp(-Self.seconds(now - stamp) / (Self.decay * 3))
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
