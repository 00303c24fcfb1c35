import Logging
import SallyportKerberos
public import ServiceLifecycle

/// Keeps the connector's own Kerberos credentials (once obtained) from lapsing between requests, and users'
/// cached tickets within `revalidateInterval` of the KDC's word: every 30 s (or more often, for a short
/// interval) it renews what is due and revalidates users, on the blocking pool.
public struct KerberosRenewalService: Service {
    let delegator: KerberosDelegator
    let logger: Logger
    /// How often credentials are checked.
    var interval: Duration { min(.seconds(30), self.delegator.settings.revalidateInterval / 4) }

    public func run() async throws {
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
            guard !Task.isCancelled, !Task.isShuttingDownGracefully else { return }
            let errors = await BlockingPool.run { self.delegator.renewDueCredentials() }
            for error in errors {
                self.logger.error("cannot renew the connector's Kerberos credentials; kcd apps get 503 for users without cached tickets", metadata: ["error": "\(error)"])
            }
            let revalidation = await BlockingPool.run { self.delegator.revalidate() }
            for user in revalidation.revoked {
                self.logger.notice("the KDC no longer vouches for a user; their cached tickets are dropped and requests refused", metadata: ["user": "\(user)"])
            }
            if !revalidation.deferred.isEmpty {
                self.logger.warning("cached users could not be revalidated (no KDC?); trying again", metadata: ["users": "\(revalidation.deferred.count)"])
            }
        }
    }
}
