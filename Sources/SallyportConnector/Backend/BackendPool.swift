import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import SallyportConfig
import Synchronization
import SallyportTLS

/// Backend connections for reuse, per scheme, host, port, TLS settings and binding (see ``BackendPoolState``
/// for the rules). A connection is lent for one exchange at a time (``lendIdle(_:near:)`` or
/// ``connect(_:on:)``) and goes back to the pool (``giveBack(_:_:)``) only when the exchange ended cleanly.
final class BackendPool: Sendable {
    private struct State {
        var connections: BackendPoolState<BackendConnection>
        var tlsContexts: [BackendTLS: NIOSSLContext] = [:]
        var lastSweep = ContinuousClock.now

        /// At most once a second: the idle connections that have been idle too long, to close.
        mutating func sweep(now: ContinuousClock.Instant) -> [BackendConnection] {
            guard now - self.lastSweep >= .seconds(1) else { return [] }
            self.lastSweep = now
            return self.connections.expire(now: now)
        }
    }

    /// What a request asks of the pool.
    struct Lease {
        var app: ConnectorApp
        /// The SSO handler's binding: only this user's requests share these connections.
        var affinity: String?
        /// The user's client connection: a backend connection that carried the client's own connection-based
        /// authentication (NTLM, Negotiate) is bound to it, and its later requests prefer that connection.
        var clientBinding: String?
        /// Open a new connection even when idle ones are pooled (a resend after a reused one failed).
        var fresh = false
    }

    /// After an exchange: what becomes of its connection.
    enum Return {
        /// Close it (an unclean or unfinished exchange).
        case close
        /// Pool it under the key it was lent under.
        case keep
        /// Pool it, bound from now on to this binding (it carried connection-based authentication).
        case keepBound(String)
    }

    /// The most idle connections kept in all, whatever their keys.
    static let maxIdleTotal = 1024

    private let state: Mutex<State>
    private let group: any EventLoopGroup
    private let idleTimeout: Duration

    init(maxIdlePerKey: Int, idleTimeout: Duration, group: any EventLoopGroup) {
        self.state = Mutex(
            State(connections: BackendPoolState(maxIdlePerKey: maxIdlePerKey, maxIdleTotal: Self.maxIdleTotal, idleTimeout: idleTimeout))
        )
        self.idleTimeout = idleTimeout
        self.group = group
    }

    /// Connections are shared by apps with the same backend and TLS settings, and, when bound (`affinity`),
    /// only among the requests of that binding.
    static func key(for app: ConnectorApp, affinity: String? = nil) -> BackendKey {
        BackendKey(scheme: app.internalURL.scheme, host: app.internalURL.host, port: app.internalURL.port, tls: app.backendTLS, affinity: affinity)
    }

    /// An idle connection for `lease`, one on `loop` first, without waiting; nil when a new one must be made.
    func lendIdle(_ lease: Lease, near loop: any EventLoop) -> BackendConnection? {
        guard !lease.fresh else { return nil }
        // A client's bound connection first, then one of the shared (or handler-bound) ones.
        var keys = [Self.key(for: lease.app, affinity: lease.affinity)]
        if lease.affinity == nil, let binding = lease.clientBinding { keys.insert(Self.key(for: lease.app, affinity: binding), at: 0) }
        let now = ContinuousClock.now
        let near = ObjectIdentifier(loop)
        let (found, stale) = self.state.withLock { state -> (BackendConnection?, [BackendConnection]) in
            var stale = state.sweep(now: now)
            for key in keys {
                let (reuse, expired) = state.connections.lease(key, now: now) { ObjectIdentifier($0.channel.eventLoop) == near }
                stale += expired
                if let reuse, reuse.isUsable { return (reuse, stale) }
                if let reuse { stale.append(reuse) }
            }
            return (nil, stale)
        }
        for connection in stale { connection.close() }
        return found
    }

    /// A new connection for `lease`, on `loop` (the tunnel stream's that asks: no thread between the two).
    func connect(_ lease: Lease, on loop: any EventLoop) -> EventLoopFuture<BackendConnection> {
        let app = lease.app
        let tls: NIOSSLContext?
        do {
            tls = try self.tlsContext(for: app)
        } catch {
            return loop.makeFailedFuture(error)
        }
        return BackendConnection.connect(
            key: Self.key(for: app, affinity: lease.affinity),
            tls: tls,
            serverName: app.backendTLS?.serverName ?? app.internalURL.host,
            timeout: app.timeouts.connect,
            idleTimeout: self.idleTimeout,
            on: loop
        ).map { connection in
            // However it closes (the backend, an idle timeout, the pool), it is no longer offered.
            connection.channel.closeFuture.whenComplete { _ in self.state.withLock { $0.connections.closed(connection) } }
            return connection
        }
    }

    /// After an exchange: pools or closes the connection as `after` says. On the connection's event loop, its
    /// link is detached first: no later borrower can be lent it before that (its events would go nowhere).
    func giveBack(_ connection: BackendConnection, _ after: Return) {
        connection.withLink { link in
            link.detach()
            switch after {
            case .close:
                connection.close()
            case .keep:
                self.park(connection, key: connection.key)
            case .keepBound(let binding):
                connection.key.affinity = binding
                self.park(connection, key: connection.key)
            }
        }
    }

    /// Opens a connection for `lease` and closes it (the doctor's check that the backend answers).
    func checkConnect(_ lease: Lease) async throws {
        let connection = try await self.connect(lease, on: self.group.next()).get()
        connection.close()
    }

    /// Closes every idle connection.
    func closeAll() {
        for connection in self.state.withLock({ $0.connections.removeAll() }) { connection.close() }
    }

    /// Idle connections now (for tests).
    var idleCount: Int { self.state.withLock { $0.connections.idleCount } }

    private func park(_ connection: BackendConnection, key: BackendKey) {
        guard connection.isUsable else { return }
        let now = ContinuousClock.now
        let close = self.state.withLock { state in
            state.sweep(now: now) + state.connections.release(connection, key: key, now: now)
        }
        for connection in close { connection.close() }
        // It may have closed between the check and parking; then closeFuture already ran and it must go.
        if !connection.isUsable { self.state.withLock { $0.connections.closed(connection) } }
    }

    private func tlsContext(for app: ConnectorApp) throws -> NIOSSLContext? {
        guard app.internalURL.scheme == "https" else { return nil }
        let settings = app.backendTLS ?? BackendTLS()
        if let cached = self.state.withLock({ $0.tlsContexts[settings] }) { return cached }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = ["http/1.1"]
        var roots: [NIOSSLCertificate] = []
        do {
            if let file = settings.caFile { roots += try TLSFiles.loadChain(file, role: "app \(app.name) (\(app.source.file)): backendTLS.caFile") }
            if let pem = settings.caPEM {
                guard let parsed = try? NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)), !parsed.isEmpty else {
                    throw TLSFiles.FileError(description: "app \(app.name) (\(app.source.file)): backendTLS.caPEM holds no readable PEM certificate")
                }
                roots += parsed
            }
        } catch {
            throw BackendError.tlsConfiguration("\(error)")
        }
        if !roots.isEmpty { configuration.trustRoots = .certificates(roots) }
        let context: NIOSSLContext
        do {
            context = try TLSFiles.context(configuration, for: "app \(app.name): backendTLS")
        } catch {
            throw BackendError.tlsConfiguration("\(error)")
        }
        self.state.withLock { $0.tlsContexts[settings] = context }
        return context
    }
}

/// Why a backend exchange failed, mapped to the status the user sees.
enum BackendError: Error, CustomStringConvertible {
    case tlsConfiguration(String)

    var description: String {
        switch self {
        case .tlsConfiguration(let reason): reason
        }
    }
}
