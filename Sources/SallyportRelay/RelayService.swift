import Foundation
public import Logging
public import NIOCore
public import NIOPosix
import NIOSSL
import SallyportAuth
public import SallyportConfig
import SallyportHTTP
public import SallyportOps
import SallyportPKI
import SallyportState
import SallyportTunnel
import SallyportWire
public import ServiceLifecycle
import Synchronization

/// The relay: the public HTTPS edge, the tunnel listener for connectors, and the app catalog.
///
/// On graceful shutdown (SIGTERM) it stops accepting, lets in-flight requests finish for up to
/// `drainTimeout`, then closes what is left and the tunnels.
public struct RelayService: Service {
    let config: RelayConfig
    let logger: Logger
    let group: any EventLoopGroup
    let onListening: (@Sendable (_ publicPort: Int, _ tunnelPort: Int) -> Void)?
    /// Listening sockets systemd passed (sallyport-relay.socket), used instead of binding where they match.
    let sockets: SystemdSockets

    /// The catalog this relay serves; reload it with ``AppCatalog/reload()`` (SIGHUP does).
    public let catalog: AppCatalog
    /// The connected connectors.
    let registry = ConnectorRegistry()
    /// The listeners' certificates, once loaded: reloaded on SIGHUP and when their files change.
    let certificates = CertificateSet()
    /// The relay's Prometheus series, served on the admin listener.
    public let metrics: RelayMetrics
    /// The last warnings and errors, for the status page (fed by the log handler the caller installs).
    let recentEvents: RecentEvents

    /// The loop that re-reads the app directory every `reloadInterval`: a service of its own in the group.
    public var appReload: AppReloadService { AppReloadService(catalog: self.catalog, interval: self.config.reloadInterval) }

    /// Creates the relay. `onListening` reports the bound ports (useful with port 0).
    public init(
        config: RelayConfig,
        logger: Logger,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        metrics: RelayMetrics = RelayMetrics(),
        recentEvents: RecentEvents = RecentEvents(),
        sockets: SystemdSockets = .none,
        onListening: (@Sendable (_ publicPort: Int, _ tunnelPort: Int) -> Void)? = nil
    ) {
        self.config = config
        self.sockets = sockets
        self.logger = logger
        self.group = group
        self.onListening = onListening
        self.metrics = metrics
        self.recentEvents = recentEvents
        self.catalog = AppCatalog(directory: config.appsDirectory, identityProviders: config.identityProviders, logger: logger, metrics: metrics)
    }

    /// Re-reads the listeners' certificates: all of them with `force` (SIGHUP), else those whose files changed.
    public func reloadCertificates(force: Bool) {
        self.certificates.reload(force: force)
    }

    public func run() async throws {
        let config = self.config
        let publicFiles = config.publicCertificates.flatMap { [$0.certificate, $0.key] }
        let publicTLS = try ReloadableTLS(name: "public", files: publicFiles, logger: self.logger) {
            try PublicTLS.makeContext(config.publicCertificates)
        }
        let clientCAs = (config.connectors.caCertificate.map { [(path: $0, role: "connectors.ca.certificate")] } ?? [])
            + config.connectors.trustedCAs.enumerated().map { (path: $0.element, role: "connectors.trustedCAs[\($0.offset)]") }
        let tunnelFiles = [config.tunnelCertificate, config.tunnelKey] + clientCAs.map(\.path)
        let tunnelTLS = try ReloadableTLS(name: "tunnel", files: tunnelFiles, logger: self.logger) {
            try TunnelTLS.relayContext(certificate: config.tunnelCertificate, key: config.tunnelKey, clientCAs: clientCAs)
        }
        self.certificates.set([publicTLS, tunnelTLS])
        // What TLS accepts but clients will not (a tunnel.address the certificate does not list); expiry is
        // ReloadableTLS's to report.
        for warning in RelayFiles.check(config, checkExpiry: false).warnings { self.logger.warning("\(warning)") }
        let store = try await RelayState.open(config: config, logger: self.logger)
        let membership: Membership
        do {
            membership = try RelayState.membership(config: config, store: store, registry: self.registry, logger: self.logger)
        } catch {
            await store.close()
            throw error
        }
        // Reads client secrets and the session key; a provider that cannot be set up only affects its own apps.
        let authenticator = PreAuthenticator(
            config: self.config, logger: self.logger, sharedKey: await RelayState.sharedSessionKey(config: config, store: store, logger: self.logger),
            ledger: StoreLedger(store: store)
        )
        do {
            try await self.serve(publicTLS: publicTLS, tunnelTLS: tunnelTLS, membership: membership, authenticator: authenticator)
        } catch {
            await authenticator.shutdown()
            await store.close()
            throw error
        }
        await authenticator.shutdown()
        await store.close()
    }

    private func serve(publicTLS: ReloadableTLS, tunnelTLS: ReloadableTLS, membership: Membership, authenticator: PreAuthenticator) async throws {
        self.catalog.reload()
        // Before the listeners open: a relay restarted behind a load balancer is not ready until the connectors
        // active elsewhere have connected here too.
        await membership.refreshExpectedGroups(appGroups: Set(self.catalog.snapshot.apps.map(\.connectorGroup)))

        let publicConnections = ChannelTracker(maxTotal: self.config.limits.maxConnections, maxPerClient: self.config.limits.maxConnectionsPerClient)
        let tunnelConnections = ChannelTracker()
        // tunnel.onPublicPort: connectors asking for tunnel.address's name in TLS are the tunnel listener's.
        let sharedTunnel = self.config.tunnelOnPublicPort
            ? PublicListener.SharedTunnel(
                names: Set([self.config.tunnelAddress?.host.lowercased()].compactMap { $0 }), tls: tunnelTLS, liveness: self.config.tunnelLiveness,
                tracker: tunnelConnections, logger: self.logger
            ) : nil
        var sockets = self.sockets
        let publicAddress = Self.address(self.config.publicListen, from: &sockets)
        let tunnelAddress = self.config.tunnelListen.map { Self.address($0, from: &sockets) }
        let opsAddress = self.config.adminListen.map { Self.address($0, from: &sockets) }
        guard sockets.sockets.isEmpty else {
            // systemd keeps these open whatever the relay does: users' connections would wait on them for nothing.
            throw ListenError(
                description:
                    "systemd passed sockets on \(sockets.sockets.map(\.address).joined(separator: ", ")) that relay.yaml does not listen on (public.listen \(self.config.publicListen), tunnel.listen \(self.config.tunnelListen.map { "\($0)" } ?? "none")): make sallyport-relay.socket's ListenStream= lines and relay.yaml agree (systemctl edit sallyport-relay.socket)"
            )
        }
        let reachability = Reachability()
        var accessLogger = Logger(label: "sallyport.access")
        accessLogger.logLevel = self.logger.logLevel
        var forwarder = RequestForwarder(
            catalog: self.catalog, registry: self.registry, reachability: reachability, authenticator: authenticator, limits: self.config.limits,
            logger: self.logger, metrics: self.metrics, accessLogger: accessLogger
        )
        // After a restart, users' requests wait for the connectors that were connected a moment ago.
        forwarder.awaitsConnectors = { group in membership.awaitsConnectors(of: group) }
        let publicServer = try await Self.listening(on: "\(publicAddress)", key: "public.listen") {
            try await PublicListener.bind(
                at: publicAddress,
                tls: publicTLS,
                limits: self.config.limits,
                drainTimeout: self.config.drainTimeout,
                tracker: publicConnections,
                tunnel: sharedTunnel,
                forwarder: forwarder,
                group: self.group,
                logger: self.logger
            )
        }
        let tunnelServer: Listener<EventLoopFuture<TunnelListener.Accepted>>? =
            if let tunnelAddress {
                try await Self.listening(on: "\(tunnelAddress)", key: "tunnel.listen") {
                    try await TunnelListener.bind(
                        at: tunnelAddress, tls: tunnelTLS, liveness: self.config.tunnelLiveness, tracker: tunnelConnections, group: self.group,
                        logger: self.logger
                    )
                }
            } else { nil }
        let adminServer = try await Self.listening(on: self.config.adminSocket, key: "admin.socket") {
            try await AdminAPI.bind(path: self.config.adminSocket, group: self.group, logger: self.logger)
        }
        let opsServer: AdminListener.Server? =
            if let opsAddress {
                try await Self.listening(on: "\(opsAddress)", key: "admin.listen") {
                    try await AdminListener.bind(at: opsAddress, group: self.group, logger: self.logger)
                }
            } else { nil }
        let publicPort = publicServer.channel.localAddress?.port ?? self.config.publicListen.port
        let tunnelPort = tunnelServer?.channel.localAddress?.port ?? self.config.tunnelListen?.port ?? publicPort
        var listening: Logger.Metadata = ["public": "\(self.config.publicListen.host):\(publicPort)"]
        if let listen = self.config.tunnelListen { listening["tunnel"] = "\(listen.host):\(tunnelPort)" }
        if let shared = sharedTunnel { listening["tunnel.onPublicPort"] = "\(shared.names.sorted().joined(separator: ","))" }
        if let opsServer, let listen = self.config.adminListen {
            listening["admin"] = "\(listen.host):\(opsServer.channel.localAddress?.port ?? listen.port)"
        }
        if !self.sockets.sockets.isEmpty { listening["systemd.sockets"] = "\(self.sockets.sockets.map(\.address).joined(separator: ","))" }
        self.logger.info("relay listening", metadata: listening)
        membership.tunnelBound(port: tunnelPort)
        self.onListening?(publicPort, tunnelPort)

        let edge = PublicListener(logger: self.logger)
        let catalog = self.catalog
        let shared = if case .postgres = self.config.store { true } else { false }
        let relays = RelayDirectory(
            own: membership.endpoint, store: membership.store, shared: shared, software: SallyportVersion.current, digest: { catalog.snapshot.digest },
            logger: self.logger
        )
        // Before any tunnel is accepted: a welcome lists every relay, not this one alone.
        await relays.poll()
        let tunnels = TunnelListener(
            catalog: self.catalog, registry: self.registry, membership: membership, relays: relays, registration: membership.registrationEndpoint,
            logger: self.logger
        )
        let admin = AdminAPI(membership: membership, catalog: self.catalog, reachability: reachability, logger: self.logger).endpoint
        let site = RelayAdminSite(
            config: self.config, catalog: self.catalog, membership: membership, relays: relays, registry: self.registry, reachability: reachability,
            certificates: self.certificates, metrics: self.metrics, recentEvents: self.recentEvents, started: Date(), logger: self.logger
        ).server

        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                // Each connection's task runs on the connection's event loop (see EventLoopExecutor).
                try await publicServer.run { accepted in
                    switch try? await accepted.get() {
                    case .users(let negotiation)?: await edge.serve(negotiation)
                    case .tunnel(let tunnel)?: await tunnels.serve(tunnel)
                    case nil: break
                    }
                }
            }
            if let tunnelServer {
                group.addTask { try await tunnelServer.run { accepted in await tunnels.serve(accepted) } }
            }
            group.addTask { try await AdminListener.serve(adminServer, with: admin.server) }
            if let opsServer {
                group.addTask { try await AdminListener.serve(opsServer, with: site) }
            }
            group.addTask {
                // Upkeep: certificate files, inactive connectors, expired tokens and certificates.
                try? await cancelWhenGracefulShutdown {
                    var lastSweep = ContinuousClock.now - .seconds(3600)
                    var lastExpiryCheck = ContinuousClock.now
                    while true {
                        self.reloadCertificates(force: false)
                        if ContinuousClock.now - lastExpiryCheck >= .seconds(86400) {
                            lastExpiryCheck = .now
                            publicTLS.warnAboutExpiry()
                            tunnelTLS.warnAboutExpiry()
                        }
                        if ContinuousClock.now - membership.started < Membership.warmUp {
                            await membership.refreshExpectedGroups(appGroups: Set(self.catalog.snapshot.apps.map(\.connectorGroup)))
                        }
                        if ContinuousClock.now - lastSweep >= membership.sweepInterval {
                            lastSweep = .now
                            await membership.sweep()
                        }
                        try await Task.sleep(for: min(self.config.reloadInterval, membership.sweepInterval))
                    }
                }
            }
            group.addTask {
                // Who else shares the store, for connectors to dial; this relay leaves the list as it stops.
                await cancelWhenGracefulShutdown { await relays.run() }
            }
            group.addTask {
                // Connectors removed or moved through another relay sharing the store.
                await cancelWhenGracefulShutdown { await membership.followChanges() }
            }
            group.addTask {
                // Graceful shutdown: stop accepting, drain, then close the tunnels.
                try? await gracefulShutdown()
                self.logger.info("relay draining", metadata: ["connections": "\(publicConnections.count)", "timeout": "\(self.config.drainTimeout)"])
                // Closed before quiescing, so no connection is accepted after the quiesce event went out. (A socket
                // from systemd stays open in systemd: connections wait there for the next relay.)
                await publicServer.close()
                publicConnections.quiesce()
                if !(await publicConnections.waitUntilEmpty(timeout: self.config.drainTimeout)) {
                    self.logger.warning("drain timeout passed; closing remaining connections", metadata: ["connections": "\(publicConnections.count)"])
                    publicConnections.closeAll()
                }
                tunnelServer?.startClosing()
                adminServer.startClosing()
                opsServer?.startClosing()
                tunnelConnections.closeAll()
                self.logger.info("relay stopped")
            }
        }
    }

    /// Where a listener configured on `listen` listens: a socket systemd passed for that address, else the
    /// address itself.
    static func address(_ listen: HostPort, from sockets: inout SystemdSockets) -> ListenAddress {
        guard let socket = sockets.take(host: listen.host, port: listen.port) else { return .tcp(host: listen.host, port: listen.port) }
        return .inherited(descriptor: socket.descriptor, address: socket.address)
    }

    /// Binds a listener, turning a failure into a message that names the address and the config key.
    static func listening<T>(on address: String, key: String, _ bind: () async throws -> T) async throws -> T {
        do {
            return try await bind()
        } catch {
            throw ListenError(
                description: "\(key): cannot listen on \(address): \(error). Is another process using the port, or is the address not on this machine?"
            )
        }
    }
}

/// A listener could not be opened; says which one and why.
public struct ListenError: Error, CustomStringConvertible {
    /// The message for the operator.
    public var description: String
}

/// The listeners' reloadable certificates, filled in when the relay starts.
final class CertificateSet: Sendable {
    private let all = Mutex<[ReloadableTLS]>([])

    func set(_ contexts: [ReloadableTLS]) { self.all.withLock { $0 = contexts } }

    func reload(force: Bool) {
        for tls in self.all.withLock({ $0 }) { tls.reload(force: force) }
    }

    /// Every certificate the listeners serve or trust, by listener and file.
    func facts() -> [(listener: String, file: String, facts: CertificateFacts)] {
        self.all.withLock({ $0 }).flatMap { tls in tls.certificateFacts().map { (tls.name, $0.file, $0.facts) } }
    }
}
