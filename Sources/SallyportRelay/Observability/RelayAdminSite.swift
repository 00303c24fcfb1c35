import Foundation
import HTTPTypes
import Logging
import Prometheus
import SallyportConfig
import SallyportHTTP
import SallyportOps
import SallyportPKI
import SallyportState
import SallyportWire

/// What the relay's admin listener serves: `/metrics` (Prometheus), `/readyz` (503 while no app is loaded, and
/// in the first seconds after start while connectors active elsewhere have not connected here yet),
/// `/livez`, and the status page at `/` (groups, connectors, apps, certificates, recent errors).
struct RelayAdminSite: Sendable {
    let config: RelayConfig
    let catalog: AppCatalog
    let membership: Membership
    /// The relays sharing the store.
    let relays: RelayDirectory
    let registry: ConnectorRegistry
    let reachability: Reachability
    let certificates: CertificateSet
    let metrics: RelayMetrics
    let recentEvents: RecentEvents
    let started: Date
    let logger: Logger

    var server: SmallHTTPServer {
        AdminSite(
            registry: self.metrics.registry,
            refresh: { await self.refreshMetrics() },
            notReady: {
                self.catalog.snapshot.apps.isEmpty ? "no app configuration is loaded (check the apps directory and the log)" : self.membership.warmingUp()
            },
            ready: { "\(self.catalog.snapshot.apps.count) apps, generation \(self.catalog.snapshot.generation)" },
            statusPage: { await self.statusPage() }
        ).server(logger: self.logger)
    }

    /// Sets the series that describe state rather than count events.
    func refreshMetrics(now: Date = Date()) async {
        let snapshot = self.catalog.snapshot
        self.metrics.set("sallyport_config_generation", help: "Generation of the app configuration this relay serves.", to: Double(snapshot.generation))
        self.metrics.set("sallyport_apps", help: "Apps in service.", to: Double(snapshot.apps.count))
        let digest = snapshot.digest
        let others = self.relays.others
        for (label, count) in [("same", 1 + others.filter { $0.appsDigest == digest }.count), ("different", others.filter { $0.appsDigest != digest }.count)] {
            self.metrics.set(
                "sallyport_relays", labels: [("apps", label)],
                help: "Relays sharing this relay's store (itself included), by whether they serve the same apps as this one.", to: Double(count)
            )
        }
        let tunnels = Dictionary(grouping: self.registry.all, by: \.group)
        let statuses = (try? await self.membership.status(now: now)) ?? []
        var groups = Set(tunnels.keys).union(snapshot.apps.map(\.connectorGroup)).union(statuses.map(\.group))
        groups.formUnion(self.metrics.knownGroups())
        for group in groups {
            self.metrics.set("sallyport_tunnels", labels: [("group", group)], help: "Tunnel connections open, by connector group.", to: Double(tunnels[group]?.count ?? 0))
            for state in Membership.connectionStates {
                let count = statuses.filter { $0.group == group && $0.state == state }.count
                self.metrics.set(
                    "sallyport_connectors", labels: [("group", group), ("state", state)], help: "Registered connectors, by group and state.", to: Double(count)
                )
            }
        }
        self.metrics.remember(groups: groups)
        for (listener, file, facts) in self.certificates.facts() {
            self.metrics.set(
                "sallyport_certificate_expiry_seconds",
                labels: [("listener", listener), ("file", (file as NSString).lastPathComponent), ("subject", facts.commonName ?? "")],
                help: "Seconds until a certificate the relay serves or trusts expires (negative: expired).",
                to: facts.notAfter.timeIntervalSince(now).rounded()
            )
        }
    }

    /// The status page.
    func statusPage(now: Date = Date()) async -> StatusPage {
        let snapshot = self.catalog.snapshot
        let statuses = (try? await self.membership.status(now: now)) ?? []
        let groups = (try? await self.membership.groups(apps: snapshot.apps.map { ($0.name, $0.connectorGroup) }, connectors: statuses)) ?? []

        let groupRows: [[StatusPage.Cell]] = groups.map { group in
            [
                .init(group.name), .init(group.apps.joined(separator: ", ")),
                .init("\(group.activeConnectors.count) of \(group.connectors)", tone: group.activeConnectors.isEmpty ? (group.apps.isEmpty ? .plain : .bad) : .good),
                .init(group.warning ?? "", tone: group.warning == nil ? .plain : .bad),
            ]
        }
        let connectorRows: [[StatusPage.Cell]] = statuses.sorted { ($0.group, $0.name) < ($1.group, $1.name) }.map { status in
            let expiry = status.certificateNotAfter.map { Self.daysLeft($0, now: now) }
            return [
                .init(status.name), .init(status.id), .init(status.group), .init(status.state, tone: status.state == "active" ? .good : .warn),
                .init(status.software), .init(status.host),
                .init(status.tunnels > 0 ? "now" : status.lastSeen.map { Self.ago($0, now: now) } ?? "never"),
                .init("\(status.tunnels)"), .init("\(status.requestsInFlight)"),
                .init(expiry?.text ?? "", tone: expiry?.tone ?? .plain),
            ]
        }
        let health = AppHealth.of(snapshot.apps, groups: groups, connectors: statuses, reachability: self.reachability)
        let appRows: [[StatusPage.Cell]] = zip(snapshot.apps, health).map { app, health in
            let cell: StatusPage.Cell =
                switch health.health {
                case "no-connector": .init("no connector: answers 502", tone: .bad)
                case "ok": .init("ok", tone: .good)
                default: .init("backend unreachable from \(health.unreachableFrom.joined(separator: ", "))", tone: .warn)
                }
            return [
                .init(app.name), .init(app.externalURL.string), .init(app.connectorGroup), .init(Self.preAuthentication(app)),
                .init(app.sso.handler), cell,
            ]
        }
        let certificateRows: [[StatusPage.Cell]] = self.certificates.facts().map { listener, file, facts in
            let expiry = Self.daysLeft(facts.notAfter, now: now)
            return [.init(listener), .init(file), .init(facts.commonName ?? ""), .init(expiry.text, tone: expiry.tone)]
        }
        let rejected: [[StatusPage.Cell]] = self.catalog.lastErrors.map { [.init("\($0)", tone: .bad)] }
        let digest = snapshot.digest
        let relayRows: [[StatusPage.Cell]] =
            [[.init(self.relays.own.address + " (this relay)"), .init(SallyportVersion.current), .init(digest, tone: .good), .init("now")]]
            + self.relays.others.map { relay in
                [
                    .init(relay.address), .init(relay.software),
                    .init(relay.appsDigest == digest ? relay.appsDigest : "\(relay.appsDigest): other apps", tone: relay.appsDigest == digest ? .good : .warn),
                    .init(Self.ago(relay.seenAt, now: now)),
                ]
            }
        return StatusPage(
            title: "Sallyport relay",
            facts: [
                ("version", SallyportVersion.current), ("up", Self.duration(now.timeIntervalSince(self.started))),
                ("generation", "\(snapshot.generation)"), ("apps", "\(snapshot.apps.count)"), ("apps digest", digest),
                ("tunnels", "\(self.registry.all.count)"),
                ("public", "\(self.config.publicListen)"), ("tunnel", self.config.tunnelListen.map { "\($0)" } ?? "") ,
                ("tunnel on the public port", self.config.tunnelOnPublicPort ? "\(self.config.tunnelAddress.map { "\($0)" } ?? "")" : "no"),
            ],
            sections: [
                .init(title: "Groups", columns: ["group", "apps", "active connectors", "warning"], rows: groupRows, empty: "No groups yet."),
                .init(
                    title: "Connectors",
                    columns: ["name", "id", "group", "state", "version", "host", "last seen", "tunnels", "in flight", "certificate"],
                    rows: connectorRows, empty: "No connector is registered: create a token with `sallyport connectors token create`."
                ),
                .init(title: "Apps", columns: ["app", "external URL", "group", "pre-authentication", "SSO", "health"], rows: appRows, empty: "No app is loaded."),
                .init(title: "Rejected app files", columns: ["error"], rows: rejected, empty: "None: every app file loaded."),
                .init(title: "Relays", columns: ["address", "version", "apps digest", "last seen"], rows: relayRows, empty: ""),
                .init(title: "Certificates", columns: ["listener", "file", "subject", "expires"], rows: certificateRows, empty: "None."),
                .recentEvents(self.recentEvents, since: "the relay started"),
            ]
        )
    }

    static func preAuthentication(_ app: AppConfig) -> String {
        guard let policy = app.preAuthentication.policy else { return "passthrough" }
        return policy.method.rawValue + (policy.provider.map { " (\($0))" } ?? "")
    }

    static func daysLeft(_ notAfter: Date, now: Date) -> (text: String, tone: StatusPage.Cell.Tone) {
        let left = notAfter.timeIntervalSince(now)
        let day = Self.day(notAfter)
        if left <= 0 { return ("expired \(day)", .bad) }
        let days = Int(left / 86400)
        return ("\(day) (\(days) days)", left < ReloadableTLS.warningWindow ? .warn : .good)
    }

    static func ago(_ date: Date, now: Date) -> String { Self.duration(now.timeIntervalSince(date)) + " ago" }

    static func duration(_ seconds: TimeInterval) -> String {
        let total = max(0, Int(seconds))
        if total < 120 { return "\(total)s" }
        if total < 7200 { return "\(total / 60)m" }
        if total < 172_800 { return "\(total / 3600)h \(total % 3600 / 60)m" }
        return "\(total / 86400)d \(total % 86400 / 3600)h"
    }

    static func day(_ date: Date) -> String { date.formatted(.iso8601.year().month().day()) }
}
