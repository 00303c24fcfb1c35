import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import SallyportConfig
import Synchronization
import SallyportTLS

/// Backend connections for reuse, per scheme, host, port, TLS settings and binding (see ``BackendPoolState``
/// for the rules). A connection is lent for one exchange at a time (``withConnection(_:exchange:)``) and
/// goes back to the pool only when the exchange ended cleanly.
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

    /// Runs `exchange` on a connection for `lease` (an idle one when there is one, else a new one; `reused`
    /// tells which), then pools or closes it as `exchange` says. Connect failures are thrown.
    func withConnection<Result>(
        _ lease: Lease,
        exchange: (_ connection: BackendConnection, _ reused: Bool) async -> (Result, Return)
    ) async throws -> Result {
        let (connection, reused) = try await self.lend(lease)
        let (result, after) = await exchange(connection, reused)
        switch after {
        case .close:
            connection.close()
        case .keep:
            self.park(connection, key: connection.key)
        case .keepBound(let binding):
            connection.key.affinity = binding
            self.park(connection, key: connection.key)
        }
        return result
    }

    /// Closes every idle connection.
    func closeAll() {
        for connection in self.state.withLock({ $0.connections.removeAll() }) { connection.close() }
    }

    /// Idle connections now (for tests).
    var idleCount: Int { self.state.withLock { $0.connections.idleCount } }

    private func lend(_ lease: Lease) async throws -> (BackendConnection, reused: Bool) {
        let shared = Self.key(for: lease.app, affinity: lease.affinity)
        if !lease.fresh {
            // A client's bound connection first, then one of the shared (or handler-bound) ones.
            var keys = [shared]
            if lease.affinity == nil, let binding = lease.clientBinding { keys.insert(Self.key(for: lease.app, affinity: binding), at: 0) }
            let now = ContinuousClock.now
            let loop = MultiThreadedEventLoopGroup.currentEventLoop.map(ObjectIdentifier.init)
            let (found, stale) = self.state.withLock { state -> (BackendConnection?, [BackendConnection]) in
                var stale = state.sweep(now: now)
                for key in keys {
                    let (reuse, expired) = state.connections.lease(key, now: now) { ObjectIdentifier($0.channel.eventLoop) == loop }
                    stale += expired
                    if let reuse, reuse.isUsable { return (reuse, stale) }
                    if let reuse { stale.append(reuse) }
                }
                return (nil, stale)
            }
            for connection in stale { connection.close() }
            if let found { return (found, true) }
        }
        let app = lease.app
        let connection = try await BackendConnection.connect(
            key: shared,
            tls: try self.tlsContext(for: app),
            serverName: app.backendTLS?.serverName ?? app.internalURL.host,
            timeout: app.timeouts.connect,
            idleTimeout: self.idleTimeout,
            // On the loop of the tunnel stream that asks (its task runs there): no thread between the two.
            group: MultiThreadedEventLoopGroup.currentEventLoop ?? self.group
        )
        // However it closes (the backend, an idle timeout, the pool), it is no longer offered.
        connection.channel.closeFuture.whenComplete { _ in self.state.withLock { $0.connections.closed(connection) } }
        return (connection, false)
    }

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
