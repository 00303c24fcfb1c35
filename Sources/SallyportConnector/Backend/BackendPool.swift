import Foundation
import Logging
import NIOCore
import NIOSSL
import SallyportConfig
import Synchronization

/// Keeps idle backend connections for reuse, per scheme, host, port and TLS settings.
///
/// A connection is reused only after a complete, clean exchange; anything odd closes it instead.
final class BackendPool: Sendable {
    private struct State {
        var idle: [BackendKey: [BackendConnection]] = [:]
        var tlsContexts: [String: NIOSSLContext] = [:]
    }

    private let state = Mutex(State())
    private let maxIdlePerKey: Int
    private let idleTimeout: Duration
    private let group: any EventLoopGroup

    init(maxIdlePerKey: Int, idleTimeout: Duration, group: any EventLoopGroup) {
        self.maxIdlePerKey = maxIdlePerKey
        self.idleTimeout = idleTimeout
        self.group = group
    }

    /// Connections are shared by apps with the same backend and TLS settings, and, when an SSO handler binds
    /// connections to a user (`affinity`), only among that user's requests.
    static func key(for app: AppConfig, affinity: String? = nil) -> BackendKey {
        let tls = app.backendTLS.map { "\($0.caFile ?? "")|\($0.caPEM?.hashValue ?? 0)|\($0.serverName ?? "")" } ?? ""
        return BackendKey(scheme: app.internalURL.scheme, host: app.internalURL.host, port: app.internalURL.port, tlsIdentity: tls, affinity: affinity)
    }

    /// An idle connection for `app`'s backend, or a new one. Reports whether it was reused.
    /// `fresh`: open a new connection even when idle ones are pooled (a resend after a reused one failed).
    func lease(for app: AppConfig, affinity: String? = nil, fresh: Bool = false) async throws -> (BackendConnection, reused: Bool) {
        let key = Self.key(for: app, affinity: affinity)
        let now = ContinuousClock.now
        let (reusable, stale) = self.state.withLock { state -> (BackendConnection?, [BackendConnection]) in
            var stale: [BackendConnection] = []
            if fresh { return (nil, stale) }
            while let candidate = state.idle[key]?.popLast() {
                if candidate.isUsable, now - candidate.lastUsed < self.idleTimeout {
                    return (candidate, stale)
                }
                stale.append(candidate)
            }
            return (nil, stale)
        }
        for connection in stale { connection.close() }
        if let reusable { return (reusable, true) }
        let tls = try self.tlsContext(for: app)
        let connection = try await BackendConnection.connect(
            key: key,
            tls: tls,
            serverName: app.backendTLS?.serverName ?? app.internalURL.host,
            timeout: app.timeouts.connect,
            idleTimeout: max(app.timeouts.idle, self.idleTimeout),
            group: self.group
        )
        return (connection, false)
    }

    /// Returns a connection after a clean exchange.
    func release(_ connection: BackendConnection) {
        guard connection.isUsable else { return }
        connection.lastUsed = .now
        let kept = self.state.withLock { state -> Bool in
            var list = state.idle[connection.key, default: []]
            guard list.count < self.maxIdlePerKey else { return false }
            list.append(connection)
            state.idle[connection.key] = list
            return true
        }
        if !kept { connection.close() }
    }

    /// Closes every idle connection.
    func closeAll() {
        let all = self.state.withLock { state -> [BackendConnection] in
            defer { state.idle = [:] }
            return state.idle.values.flatMap { $0 }
        }
        for connection in all { connection.close() }
    }

    private func tlsContext(for app: AppConfig) throws -> NIOSSLContext? {
        guard app.internalURL.scheme == "https" else { return nil }
        let key = Self.key(for: app).tlsIdentity
        if let cached = self.state.withLock({ $0.tlsContexts[key] }) { return cached }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = ["http/1.1"]
        if let tls = app.backendTLS {
            var roots: [NIOSSLCertificate] = []
            do {
                if let file = tls.caFile { roots += try NIOSSLCertificate.fromPEMFile(file) }
                if let pem = tls.caPEM { roots += try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)) }
            } catch {
                throw BackendError.tlsConfiguration("app \(app.name): cannot read backendTLS CA (\(error)); check backendTLS.caFile or caPEM in \(app.sourceFile)")
            }
            if !roots.isEmpty { configuration.trustRoots = .certificates(roots) }
        }
        let context = try NIOSSLContext(configuration: configuration)
        self.state.withLock { $0.tlsContexts[key] = context }
        return context
    }
}

/// Why a backend exchange failed, mapped to the status the user sees.
enum BackendError: Error, CustomStringConvertible {
    case connectRefused(String)
    case connectTimeout
    case responseTimeout
    case tlsConfiguration(String)
    case connectionLost
    case unknownApp(String)

    var description: String {
        switch self {
        case .connectRefused(let reason): "backend refused the connection: \(reason)"
        case .connectTimeout: "backend connect timed out"
        case .responseTimeout: "backend did not answer within the response timeout"
        case .tlsConfiguration(let reason): reason
        case .connectionLost: "backend closed the connection before answering"
        case .unknownApp(let name): "app \(name) is not in this connector's configuration"
        }
    }
}
