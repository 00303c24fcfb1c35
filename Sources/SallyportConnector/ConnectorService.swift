import Foundation
public import Logging
public import NIOCore
public import NIOPosix
import SallyportKCD
public import SallyportConfig
import SallyportHTTP
public import SallyportOps
public import SallyportKerberos
public import SallyportSSO
public import SallyportPluginAPI
import SallyportTunnel
public import ServiceLifecycle

/// The connector: keeps `connections` tunnel connections to the relay and forwards their requests to
/// backends. Stateless: it holds only the relay address and its certificate; apps come from the relay.
public struct ConnectorService: Service {
    let config: ConnectorConfig
    let logger: Logger
    let group: any EventLoopGroup

    /// The apps pushed by the relay, with their SSO pipelines (for status and tests).
    public let apps: AppTable
    /// Kerberos credentials for the `kcd` handler, obtained on first use.
    let delegator: KerberosDelegator
    /// The connector's Prometheus series, served on its admin listener (`admin.listen`).
    public let metrics: ConnectorMetrics
    /// The last warnings and errors, for the status page (fed by the log handler the caller installs).
    let recentEvents: RecentEvents
    /// What the tunnels share: control streams, the relay list, a refusal for good.
    let hub = TunnelHub()

    /// Creates a connector whose apps use the SSO handlers in `handlers` (the built-in ones and loaded plugins).
    public init(
        config: ConnectorConfig, logger: Logger, handlers: HandlerCatalog = .builtIn, pluginLogLevels: [String: LogLevel] = [:],
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, metrics: ConnectorMetrics = ConnectorMetrics(), recentEvents: RecentEvents = RecentEvents()
    ) {
        self.config = config
        self.logger = logger
        self.group = group
        self.metrics = metrics
        self.recentEvents = recentEvents
        self.delegator = Self.delegator(for: config.kerberos, observer: { metrics.observe($0) })
        var handlers = handlers
        handlers.replace(KCDHandlerFactory(delegator: self.delegator, allowedSPNs: config.kerberos.allowedSPNs))
        self.apps = AppTable(handlers: handlers, logger: logger, metrics: metrics, logLevels: pluginLogLevels)
    }

    /// The delegator for a connector's `kerberos` settings; KDC exchanges run on NIO's blocking thread pool.
    public static func delegator(for settings: KerberosSettings, observer: (@Sendable (KerberosDelegator.Event) -> Void)? = nil) -> KerberosDelegator {
        KerberosDelegator(
            settings: .init(
                keytab: settings.keytab, principal: settings.principal, renewBefore: settings.renewBefore, maxEntries: settings.maxCachedTickets,
                kdcRetryDelay: settings.kdcRetryDelay, revalidateInterval: settings.revalidateInterval
            ),
            executor: BlockingPool.executor,
            observer: observer
        )
    }

    public func run() async throws {
        let credentials = try Credentials(config: self.config)
        let proxy: OutboundProxy?
        switch self.config.proxy.resolve(environment: ProcessInfo.processInfo.environment, target: self.config.relay.host) {
        case .success(let resolved): proxy = resolved
        case .failure(let problem): throw ProxySettingError(description: problem.message)
        }
        let name = self.config.name ?? ProcessInfo.processInfo.hostName
        let pool = BackendPool(
            maxIdlePerKey: self.config.maxIdleBackendConnections,
            idleTimeout: self.config.backendIdleTimeout,
            group: self.group
        )
        defer { pool.closeAll() }
        var logger = self.logger
        logger[metadataKey: "connector"] = "\(name)"
        var accessLogger = Logger(label: "sallyport.access")
        accessLogger.logLevel = self.logger.logLevel
        let forwarder = BackendForwarder(apps: self.apps, pool: pool, logger: logger, metrics: self.metrics, accessLogger: accessLogger)
        let opsServer: AdminListener.Server? =
            if let listen = self.config.adminListen {
                try await AdminListener.bind(at: .tcp(host: listen.host, port: listen.port), group: self.group, logger: self.logger)
            } else { nil }
        var starting: Logger.Metadata = ["relay": "\(self.config.relay)", "connections": "\(self.config.connections)", "certificateNotAfter": "\(credentials.notAfter)"]
        if let proxy { starting["proxy"] = "\(proxy) (from \(proxy.source))" }
        if let opsServer, let listen = self.config.adminListen {
            starting["admin"] = "\(listen.host):\(opsServer.channel.localAddress?.port ?? listen.port)"
        }
        logger.info("connector starting", metadata: starting)
        let site = ConnectorAdminSite(
            config: self.config, name: name, apps: self.apps, hub: hub, credentials: credentials, delegator: self.delegator, metrics: self.metrics,
            recentEvents: self.recentEvents, started: Date(), proxy: proxy, logger: logger
        ).server
        await withDiscardingTaskGroup { group in
            if let opsServer {
                group.addTask {
                    try? await withTaskCancellationOrGracefulShutdownHandler {
                        try await AdminListener.serve(opsServer, with: site)
                    } onCancelOrGracefulShutdown: {
                        opsServer.startClosing()
                    }
                }
            }
            let renewal = CertificateRenewal(credentials: credentials, hub: hub, logger: logger)
            group.addTask { await renewal.run() }
            let roster = RelayRosterRunner(config: self.config, hub: hub, logger: logger) { [logger] target, dialer, index, retire in
                var logger = logger
                logger[metadataKey: "relay"] = "\(target)"
                var session = TunnelSession(
                    index: index,
                    config: self.config,
                    connectorName: name,
                    credentials: credentials,
                    hub: hub,
                    delegator: self.delegator,
                    apps: self.apps,
                    forwarder: forwarder,
                    dialer: dialer,
                    serverName: target.serverName,
                    group: self.group,
                    logger: logger
                )
                session.retire = retire
                return session
            }
            group.addTask { await roster.run(configuredProxy: proxy) }
        }
        await self.apps.shutDownHandlers()
        logger.info("connector stopped")
    }

    /// Ends the connector, through its service group's graceful shutdown, when a relay says it is not
    /// registered (``ConnectorNotRegistered``): a service of its own in the group.
    public var registrationWatch: RegistrationWatch { RegistrationWatch(hub: self.hub) }

    /// The loop that makes failed SSO handlers again: a service of its own in the service group.
    public var handlerRecovery: HandlerRecoveryService { HandlerRecoveryService(apps: self.apps) }

    /// The loop that renews the connector's Kerberos credentials: a service of its own in the service group.
    public var kerberosRenewal: KerberosRenewalService {
        var logger = self.logger
        logger[metadataKey: "connector"] = "\(self.config.name ?? ProcessInfo.processInfo.hostName)"
        return KerberosRenewalService(delegator: self.delegator, logger: logger)
    }
}

/// The proxy setting (config key or environment) cannot be used; says which and why.
public struct ProxySettingError: Error, CustomStringConvertible {
    public var description: String
}

/// Throws the first ``ConnectorNotRegistered`` a relay gives, so the service group shuts the connector down.
public struct RegistrationWatch: Service {
    let hub: TunnelHub

    public func run() async throws {
        for await refusal in self.hub.refusals.cancelOnGracefulShutdown() { throw refusal }
    }
}
