import Foundation
public import Logging
public import NIOCore
public import NIOPosix
import SallyportKCD
public import SallyportConfig
public import SallyportKerberos
public import SallyportSSO
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

    /// Creates a connector whose apps use the SSO handlers in `handlers` (the built-in ones and loaded plugins).
    public init(
        config: ConnectorConfig, logger: Logger, handlers: HandlerCatalog = .builtIn, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.config = config
        self.logger = logger
        self.group = group
        self.delegator = Self.delegator(for: config.kerberos)
        var handlers = handlers
        handlers.replace(KCDHandlerFactory(delegator: self.delegator, allowedSPNs: config.kerberos.allowedSPNs))
        self.apps = AppTable(handlers: handlers, logger: logger)
    }

    /// The delegator for a connector's `kerberos` settings; KDC exchanges run on NIO's blocking thread pool.
    public static func delegator(for settings: KerberosSettings) -> KerberosDelegator {
        KerberosDelegator(
            settings: .init(
                keytab: settings.keytab, principal: settings.principal, renewBefore: settings.renewBefore, maxEntries: settings.maxCachedTickets,
                kdcRetryDelay: settings.kdcRetryDelay, revalidateInterval: settings.revalidateInterval
            ),
            executor: BlockingPool.executor
        )
    }

    public func run() async throws {
        let credentials = try Credentials(config: self.config)
        let hub = TunnelHub()
        let name = self.config.name ?? ProcessInfo.processInfo.hostName
        let pool = BackendPool(
            maxIdlePerKey: self.config.maxIdleBackendConnections,
            idleTimeout: self.config.backendIdleTimeout,
            group: self.group
        )
        defer { pool.closeAll() }
        var logger = self.logger
        logger[metadataKey: "connector"] = "\(name)"
        let forwarder = BackendForwarder(apps: self.apps, pool: pool, logger: logger)
        logger.info("connector starting", metadata: ["relay": "\(self.config.relay)", "connections": "\(self.config.connections)", "certificateNotAfter": "\(credentials.notAfter)"])
        await withDiscardingTaskGroup { group in
            let renewal = CertificateRenewal(credentials: credentials, hub: hub, logger: logger)
            group.addTask { await renewal.run() }
            for index in 0..<self.config.connections {
                let session = TunnelSession(
                    index: index,
                    config: self.config,
                    connectorName: name,
                    credentials: credentials,
                    hub: hub,
                    delegator: self.delegator,
                    apps: self.apps,
                    forwarder: forwarder,
                    group: self.group,
                    logger: logger
                )
                group.addTask { await session.run() }
            }
        }
        logger.info("connector stopped")
    }

    /// The loop that renews the connector's Kerberos credentials: a service of its own in the service group.
    public var kerberosRenewal: KerberosRenewalService {
        var logger = self.logger
        logger[metadataKey: "connector"] = "\(self.config.name ?? ProcessInfo.processInfo.hostName)"
        return KerberosRenewalService(delegator: self.delegator, logger: logger)
    }
}
