import Logging
import SallyportKerberos
public import ServiceLifecycle

/// Keeps the connector's own Kerberos credentials (once obtained) from lapsing between requests: every 30 s
/// it renews those that are due, on the blocking pool.
public struct KerberosRenewalService: Service {
    let delegator: KerberosDelegator
    let logger: Logger
    /// How often credentials are checked.
    static let interval: Duration = .seconds(30)

    public func run() async throws {
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: Self.interval) }
            guard !Task.isCancelled, !Task.isShuttingDownGracefully else { return }
            let errors = await BlockingPool.run { self.delegator.renewDueCredentials() }
            for error in errors {
                self.logger.error("cannot renew the connector's Kerberos credentials; kcd apps get 503 for users without cached tickets", metadata: ["error": "\(error)"])
            }
        }
    }
}
