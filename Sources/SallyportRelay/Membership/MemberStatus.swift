import Foundation
import HTTPTypes
import Logging
import SallyportConfig
import SallyportState
import Synchronization

/// One connector as `sallyport connectors list` and the admin API show it.
struct ConnectorStatus: Codable, Sendable, Equatable {
    var id: String
    var name: String
    var host: String
    var group: String
    var software: String
    /// ``Membership/connectionState(_:tunnels:now:)``: `active`, `draining`, `disconnected` or `inactive`.
    var state: String
    var tunnels: Int
    var requestsInFlight: Int
    /// Now while connected; else when it was last connected (nil: never).
    var lastSeen: Date?
    var registeredAt: Date
    /// Expiry of its newest certificate.
    var certificateNotAfter: Date?
    /// The newest configuration generation it applied on any tunnel (of this relay process).
    var configGeneration: UInt64
}

/// One group as `sallyport groups list` shows it.
struct GroupStatus: Codable, Sendable, Equatable {
    var name: String
    var apps: [String]
    var activeConnectors: [String]
    var connectors: Int
    /// Set when the group has apps but no active connector: its apps answer 502.
    var warning: String?
}

/// How an app fares, as the status page and `GET /v1/health` (`sallyport doctor --relay`) say it.
struct AppHealth: Codable, Sendable, Equatable {
    var name: String
    /// `ok`, `no-connector` (no active connector in its group: it answers 502) or `backend-unreachable`.
    var health: String
    /// For `backend-unreachable`: the connectors (names) whose last request to the backend failed. Red from a
    /// failed request until a request through that connector succeeds, not only while it is avoided.
    var unreachableFrom: [String]

    static func of(_ apps: [AppConfig], groups: [GroupStatus], connectors: [ConnectorStatus], reachability: Reachability) -> [AppHealth] {
        let active = Set(groups.filter { !$0.activeConnectors.isEmpty }.map(\.name))
        let names = Dictionary(connectors.map { ($0.id, $0.name) }, uniquingKeysWith: { first, _ in first })
        return apps.map { app in
            let failing = reachability.failing(app: app.name).map { names[$0] ?? $0 }.sorted()
            let health = !active.contains(app.connectorGroup) ? "no-connector" : failing.isEmpty ? "ok" : "backend-unreachable"
            return AppHealth(name: app.name, health: health, unreachableFrom: failing)
        }
    }
}

extension Membership {
    /// Every registered connector with its live state.
    func status(now: Date = Date()) async throws -> [ConnectorStatus] {
        let records = try await self.store.connectors()
        let live = Dictionary(grouping: self.registry.all, by: \.connectorID)
        var result: [ConnectorStatus] = []
        for record in records {
            let tunnels = live[record.id] ?? []
            let newest = try await self.store.certificates(connectorID: record.id).map(\.notAfter).max()
            result.append(
                ConnectorStatus(
                    id: record.id, name: record.name, host: record.host, group: record.group, software: record.software,
                    state: self.connectionState(record, tunnels: tunnels, now: now),
                    tunnels: tunnels.count, requestsInFlight: tunnels.reduce(0) { $0 + $1.activeRequests },
                    lastSeen: tunnels.isEmpty ? record.lastSeen : now, registeredAt: record.registeredAt, certificateNotAfter: newest,
                    configGeneration: tunnels.map(\.appliedGeneration).max() ?? 0
                )
            )
        }
        return result
    }

    /// Looks up which groups of `appGroups` have connectors active by the store (connected to this relay or
    /// another one lately): until they have tunnels here, a relay that just started is not ready for users.
    func refreshExpectedGroups(appGroups: Set<String>, now: Date = Date()) async {
        guard let records = try? await self.store.connectors() else { return }
        let expected = Set(records.filter { appGroups.contains($0.group) && self.isActive($0, tunnels: 0, now: now) }.map(\.group))
        self.expectedGroups.withLock { $0 = expected }
    }

    /// Why the relay should not take users yet: in its first ``warmUp``, groups with apps whose connectors are
    /// active elsewhere but have no tunnel here (a relay restarted behind a load balancer would answer their
    /// requests 503 until the connectors redial it). Nil when ready.
    func warmingUp(now: ContinuousClock.Instant = .now) -> String? {
        guard now - self.started < Self.warmUp else { return nil }
        // Tunnels that serve: configured, and not draining.
        let here = Set(self.registry.all.filter { !$0.draining && $0.appliedGeneration > 0 }.map(\.group))
        let missing = self.expectedGroups.withLock { $0 }.subtracting(here)
        guard !missing.isEmpty else { return nil }
        return "waiting for connectors of \(missing.sorted().joined(separator: ", ")) to connect (at most \(Self.warmUp) after start)"
    }

    /// Whether `group`'s connectors, active moments ago, are expected to connect to this relay soon: in its
    /// first ``warmUp``, a group whose connectors were active by the store and have no tunnel here yet.
    func awaitsConnectors(of group: String, now: ContinuousClock.Instant = .now) -> Bool {
        now - self.started < Self.warmUp && self.expectedGroups.withLock { $0.contains(group) }
    }

    /// How long a starting relay waits for the connectors it expects before it is ready anyway.
    static let warmUp: Duration = .seconds(30)

    /// Every group named by the store, an app or a connector, with its apps and active connectors.
    func groups(apps: [(name: String, group: String)], now: Date = Date()) async throws -> [GroupStatus] {
        try await self.groups(apps: apps, connectors: try await self.status(now: now))
    }

    /// The same, from `connectors` as ``status(now:)`` just gave them.
    func groups(apps: [(name: String, group: String)], connectors: [ConnectorStatus]) async throws -> [GroupStatus] {
        var names = Set(try await self.store.groups().map(\.name))
        names.formUnion(apps.map(\.group))
        names.formUnion(connectors.map(\.group))
        return names.sorted().map { name in
            let members = connectors.filter { $0.group == name }
            let active = members.filter { $0.state == "active" }.map(\.id)
            let groupApps = apps.filter { $0.group == name }.map(\.name).sorted()
            return GroupStatus(
                name: name, apps: groupApps, activeConnectors: active, connectors: members.count,
                warning: !groupApps.isEmpty && active.isEmpty ? "apps but no active connector: they answer 502 until one connects" : nil
            )
        }
    }

    /// Active: connected now, or last seen within `inactiveAfter`.
    /// What a connector is doing as this relay sees it: `active` (a tunnel here takes requests), `draining`
    /// (its tunnels here finish their requests and take no new ones), `disconnected` (no tunnel here, the last
    /// within `inactiveAfter`: restarting, or its link is down) or `inactive` (none for longer).
    func connectionState(_ record: ConnectorRecord, tunnels: [TunnelConnection], now: Date) -> String {
        if tunnels.contains(where: { !$0.draining }) { return "active" }
        if !tunnels.isEmpty { return "draining" }
        return self.isActive(record, tunnels: 0, now: now) ? "disconnected" : "inactive"
    }

    /// The states ``connectionState(_:tunnels:now:)`` takes, in the order the status page lists them.
    static let connectionStates = ["active", "draining", "disconnected", "inactive"]

    func isActive(_ record: ConnectorRecord, tunnels: Int, now: Date) -> Bool {
        if tunnels > 0 { return true }
        guard let seen = record.lastSeen else { return now.timeIntervalSince(record.registeredAt) < self.policy.inactiveAfter.seconds }
        return now.timeIntervalSince(seen) < self.policy.inactiveAfter.seconds
    }

    /// One round of upkeep: marks connected connectors as seen, removes connectors unseen for `removeAfter`,
    /// and forgets expired certificates and tokens (tokens a day after they expired, so `token list` shows them
    /// for a while).
    func sweep(now: Date = Date()) async {
        do {
            let live = Dictionary(grouping: self.registry.all, by: \.connectorID)
            for record in try await self.store.connectors() {
                if live[record.id] != nil {
                    try await self.store.recordSeen(id: record.id, at: now, software: record.software, host: record.host)
                    continue
                }
                let since = record.lastSeen ?? record.registeredAt
                if now.timeIntervalSince(since) >= self.policy.removeAfter.seconds {
                    // Decided again in the store: another relay may have seen it since this read.
                    _ = try? await self.remove(id: record.id, reason: "removed after being inactive since \(since)", unseenSince: now.addingTimeInterval(-self.policy.removeAfter.seconds))
                }
            }
            _ = try await self.store.deleteCertificates(expiredBefore: now)
            _ = try await self.store.deleteTokens(expiredBefore: now.addingTimeInterval(-86400))
        } catch {
            self.logger.warning("connector upkeep failed", metadata: ["error": "\(error)"])
        }
    }

    /// How often ``sweep(now:)`` runs: often enough to notice `inactiveAfter` and `removeAfter`.
    var sweepInterval: Duration {
        let shortest = min(self.policy.inactiveAfter, self.policy.removeAfter) / 4
        return max(.milliseconds(250), min(.seconds(30), shortest))
    }
}
