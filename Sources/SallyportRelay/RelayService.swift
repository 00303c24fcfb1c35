public import Logging
public import NIOCore
public import NIOPosix
import NIOSSL
import SallyportAuth
public import SallyportConfig
import SallyportTunnel
public import ServiceLifecycle

/// The relay: the public HTTPS edge, the tunnel listener for connectors, and the app catalog.
///
/// On graceful shutdown (SIGTERM) it stops accepting, lets in-flight requests finish for up to
/// `drainTimeout`, then closes what is left and the tunnels.
public struct RelayService: Service {
    let config: RelayConfig
    let logger: Logger
    let group: any EventLoopGroup
    let onListening: (@Sendable (_ publicPort: Int, _ tunnelPort: Int) -> Void)?

    /// The catalog this relay serves; reload it with ``AppCatalog/reload()`` (SIGHUP does).
    public let catalog: AppCatalog
    /// The connected connectors.
    let registry = ConnectorRegistry()

    /// The loop that re-reads the app directory every `reloadInterval`: a service of its own in the group.
    public var appReload: AppReloadService { AppReloadService(catalog: self.catalog, interval: self.config.reloadInterval) }

    /// Creates the relay. `onListening` reports the bound ports (useful with port 0).
    public init(
        config: RelayConfig,
        logger: Logger,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        onListening: (@Sendable (_ publicPort: Int, _ tunnelPort: Int) -> Void)? = nil
    ) {
        self.config = config
        self.logger = logger
        self.group = group
        self.onListening = onListening
        self.catalog = AppCatalog(directory: config.appsDirectory, identityProviders: config.identityProviders, logger: logger)
    }

    public func run() async throws {
        let publicTLS = try PublicTLS.makeContext(self.config.publicCertificates)
        let tunnelTLS = try TunnelTLS.relayContext(
            certificate: self.config.tunnelCertificate,
            key: self.config.tunnelKey,
            clientCA: self.config.tunnelClientCA
        )
        // Reads client secrets and the session key; a provider that cannot be set up only affects its own apps.
        let authenticator = PreAuthenticator(config: self.config, logger: self.logger)
        do {
            try await self.serve(publicTLS: publicTLS, tunnelTLS: tunnelTLS, authenticator: authenticator)
        } catch {
            await authenticator.shutdown()
            throw error
        }
        await authenticator.shutdown()
    }

    private func serve(publicTLS: NIOSSLContext, tunnelTLS: NIOSSLContext, authenticator: PreAuthenticator) async throws {
        self.catalog.reload()

        let publicConnections = ChannelTracker()
        let tunnelConnections = ChannelTracker()
        let publicServer = try await Self.listening(on: self.config.publicListen, key: "public.listen") {
            try await PublicListener.bind(
                host: self.config.publicListen.host,
                port: self.config.publicListen.port,
                tls: publicTLS,
                limits: self.config.limits,
                drainTimeout: self.config.drainTimeout,
                tracker: publicConnections,
            group: self.group
            )
        }
        let tunnelServer = try await Self.listening(on: self.config.tunnelListen, key: "tunnel.listen") {
            try await TunnelListener.bind(
                host: self.config.tunnelListen.host,
                port: self.config.tunnelListen.port,
                tls: tunnelTLS,
                tracker: tunnelConnections,
                group: self.group
            )
        }
        let publicPort = publicServer.channel.localAddress?.port ?? self.config.publicListen.port
        let tunnelPort = tunnelServer.channel.localAddress?.port ?? self.config.tunnelListen.port
        self.logger.info(
            "relay listening",
            metadata: ["public": "\(self.config.publicListen.host):\(publicPort)", "tunnel": "\(self.config.tunnelListen.host):\(tunnelPort)"]
        )
        self.onListening?(publicPort, tunnelPort)

        let forwarder = RequestForwarder(
            catalog: self.catalog, registry: self.registry, authenticator: authenticator, limits: self.config.limits, logger: self.logger
        )
        let edge = PublicListener(forwarder: forwarder, logger: self.logger)
        let tunnels = TunnelListener(catalog: self.catalog, registry: self.registry, logger: self.logger)

        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                try await publicServer.executeThenClose { inbound in
                    try await withThrowingDiscardingTaskGroup { connections in
                        for try await negotiation in inbound {
                            connections.addTask { await edge.serve(negotiation) }
                        }
                    }
                }
            }
            group.addTask {
                try await tunnelServer.executeThenClose { inbound in
                    try await withThrowingDiscardingTaskGroup { connections in
                        for try await accepted in inbound {
                            connections.addTask { await tunnels.serve(accepted) }
                        }
                    }
                }
            }
            group.addTask {
                // Graceful shutdown: stop accepting, drain, then close the tunnels.
                try? await gracefulShutdown()
                self.logger.info("relay draining", metadata: ["connections": "\(publicConnections.count)", "timeout": "\(self.config.drainTimeout)"])
                // Closed before quiescing, so no connection is accepted after the quiesce event went out.
                try? await publicServer.channel.close()
                publicConnections.quiesce()
                if !(await publicConnections.waitUntilEmpty(timeout: self.config.drainTimeout)) {
                    self.logger.warning("drain timeout passed; closing remaining connections", metadata: ["connections": "\(publicConnections.count)"])
                    publicConnections.closeAll()
                }
                tunnelServer.channel.close(promise: nil)
                tunnelConnections.closeAll()
                self.logger.info("relay stopped")
            }
        }
    }

    /// Binds a listener, turning a failure into a message that names the address and the config key.
    static func listening<T>(on address: HostPort, key: String, _ bind: () async throws -> T) async throws -> T {
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
