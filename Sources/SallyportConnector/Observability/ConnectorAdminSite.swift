import Foundation
import HTTPTypes
import Logging
import SallyportConfig
import SallyportHTTP
import SallyportKerberos
import SallyportOps
import SallyportWire

/// What the connector's admin listener serves: `/metrics`, `/readyz` (503 until a tunnel is up and the
/// relay's app configuration has arrived), `/livez`, and the status page at `/`.
struct ConnectorAdminSite: Sendable {
    let config: ConnectorConfig
    let name: String
    let apps: AppTable
    let hub: TunnelHub
    let credentials: Credentials
    let delegator: KerberosDelegator
    let metrics: ConnectorMetrics
    let recentEvents: RecentEvents
    let started: Date
    /// The proxy the tunnels go through (never its password), nil: direct.
    let proxy: OutboundProxy?
    let logger: Logger

    var server: SmallHTTPServer {
        AdminSite(
            registry: self.metrics.registry,
            refresh: { self.refreshMetrics() },
            notReady: {
                if self.hub.connectedCount == 0 { return "no tunnel to the relay is up (see the log)" }
                if self.apps.version == nil { return "the relay's app configuration has not arrived" }
                return nil
            },
            ready: { "\(self.hub.connectedCount) tunnels, \(self.apps.apps.count) apps, generation \(self.apps.version?.generation ?? 0)" },
            statusPage: { self.statusPage() }
        ).server(logger: self.logger)
    }

    func refreshMetrics(now: Date = Date()) {
        self.metrics.set("sallyport_connector_tunnels", help: "Tunnel connections to the relay that are up.", to: Double(self.hub.connectedCount))
        self.metrics.set(
            "sallyport_connector_config_generation", help: "Generation of the app configuration this connector applied.",
            to: Double(self.apps.version?.generation ?? 0)
        )
        self.metrics.set("sallyport_kcd_ticket_cache_entries", help: "Users' credentials in the kcd ticket cache.", to: Double(self.delegator.cachedCount))
        self.metrics.set(
            "sallyport_certificate_expiry_seconds", labels: [("certificate", "connector")],
            help: "Seconds until the connector's certificate expires (it renews itself when a third is left).",
            to: self.credentials.notAfter.timeIntervalSince(now).rounded()
        )
    }

    func statusPage(now: Date = Date()) -> StatusPage {
        let appRows: [[StatusPage.Cell]] = self.apps.apps.map { app in
            let state: StatusPage.Cell =
                switch self.apps.entry(named: app.name)?.pipeline {
                case .unavailable(let error): .init("unavailable: \(error)", tone: .bad)
                default: .init("ok", tone: .good)
                }
            return [.init(app.name), .init(app.internalURL.string), .init(app.sso.handler), state]
        }
        let left = self.credentials.notAfter.timeIntervalSince(now)
        let certificate: StatusPage.Cell = .init(
            "\(self.credentials.notAfter.formatted(.iso8601)) (\(Int(left / 86400)) days; renews at \(self.credentials.renewalDue.formatted(.iso8601)))",
            tone: left <= 0 ? .bad : now >= self.credentials.renewalDue ? .warn : .good
        )
        let tunnels = self.hub.connectedCount
        // One row per relay it has tunnels to (several relays sharing a store list each other); the configured
        // address alone until one answers.
        let byRelay = self.hub.connectedByRelay
        let relays = byRelay.isEmpty ? ["\(self.config.relay)"] : byRelay.keys.sorted()
        let tunnelRows: [[StatusPage.Cell]] = relays.map { relay in
            let up = byRelay[relay, default: 0]
            return [
                .init(relay), .init("\(up) of \(self.config.connections)", tone: up == 0 ? .bad : up < self.config.connections ? .warn : .good), certificate,
            ]
        }
        return StatusPage(
            title: "Sallyport connector \(self.name)",
            facts: [
                ("version", SallyportVersion.current), ("relay", "\(self.config.relay)"),
                ("proxy", self.proxy.map { "\($0) (from \($0.source))" } ?? "none: the relay is dialled directly"),
                ("tunnels", "\(tunnels) to \(max(1, byRelay.count)) relay\(byRelay.count > 1 ? "s" : "") (\(self.config.connections) each)"),
                ("generation", "\(self.apps.version?.generation ?? 0)"),
                ("apps", "\(self.apps.apps.count)"), ("kcd cache", "\(self.delegator.cachedCount)"),
            ],
            sections: [
                .init(
                    title: "Tunnels", columns: ["relay", "up", "certificate"],
                    rows: tunnelRows,
                    empty: ""
                ),
                .init(title: "Apps", columns: ["app", "backend", "SSO", "state"], rows: appRows, empty: "No app configuration from the relay yet."),
                .recentEvents(self.recentEvents, since: "the connector started"),
            ]
        )
    }
}
