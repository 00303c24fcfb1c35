import Foundation
import Logging
import SallyportTunnel
import SallyportWire
import ServiceLifecycle

/// Renews the connector's certificate over the tunnel once a third of its lifetime is left: a new key and
/// request each time; the relay's answer is installed by the control stream that receives it, and every
/// tunnel slot then replaces its connection. Failures are retried, more often as expiry nears.
struct CertificateRenewal: Sendable {
    let credentials: Credentials
    let hub: TunnelHub
    let logger: Logger

    func run() async {
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            let wait = self.credentials.renewalDue.timeIntervalSinceNow
            if wait > 0 {
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(Int64(min(wait, 86400) * 1000))) }
                continue
            }
            // A certificate from the administrator's own PKI is renewed there, not here.
            guard self.credentials.renewable, let send = self.hub.anySender else {
                try? await Task.sleep(for: .milliseconds(200))
                continue
            }
            let before = self.credentials.generation
            do {
                try await send(.renew(try self.credentials.renewalRequest()))
                // The control stream installs the answer; wait for it.
                let deadline = ContinuousClock.now + .seconds(30)
                while self.credentials.generation == before, ContinuousClock.now < deadline, !Task.isCancelled {
                    try await Task.sleep(for: .milliseconds(50))
                }
            } catch {
                self.logger.warning("certificate renewal request failed", metadata: ["error": "\(error)"])
            }
            if self.credentials.generation == before {
                let left = self.credentials.notAfter.timeIntervalSinceNow
                self.logger.warning("certificate not renewed yet; trying again", metadata: ["expiresIn": "\(Int(left))s"])
                try? await Task.sleep(for: .milliseconds(Int64(max(1, min(60, left / 10)) * 1000)))
            }
        }
    }
}
