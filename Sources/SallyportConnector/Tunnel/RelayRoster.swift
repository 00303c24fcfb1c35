import SallyportConfig
import SallyportWire

/// Which relays the connector keeps tunnels to: the decisions, with no I/O (``RelayRosterRunner`` acts on them).
///
/// It starts with the relay of connector.yaml (`relay`: one relay, a load balancer, or a DNS name of several).
/// Relays that share a store send the list of all of them; the connector then keeps `connections` tunnels to
/// each listed relay, and stops dialling the configured address once a listed relay serves, unless that
/// address is itself listed. Should no listed relay serve for ``rediscoverAfter``, it dials the configured
/// address again to learn a new list. A relay of protocol 3 sends no list: the configured relay is all.
///
/// A relay that leaves the list is given up only once it has had no tunnel up for ``retireAfter``: a relay
/// that lost the database (and so its place in the others' lists) while users and connectors still reach it
/// keeps serving.
struct RelayRoster {
    /// A relay to keep tunnels to.
    struct Target: Hashable, Sendable, CustomStringConvertible {
        var address: HostPort
        /// The name checked on its tunnel certificate.
        var serverName: String
        var description: String { "\(self.address)" }
    }

    enum Action: Equatable {
        case start(Target)
        case stop(Target)
    }

    /// The most relays a connector keeps tunnels to.
    static let maxRelays = 16

    /// How long every listed relay may be out of reach before the configured address is dialled again.
    static let rediscoverAfter: Duration = .seconds(30)
    /// How long a relay off the list may be without a tunnel up before it is given up.
    static let retireAfter: Duration = .seconds(10)

    let configured: Target
    /// Targets with tunnels running, by address.
    private(set) var running: [HostPort: Target] = [:]
    /// The last list a relay sent; empty until one does.
    private(set) var listed: [Target] = []
    /// Since when no listed relay has served (nil: one serves, or none is listed).
    private var unservedSince: ContinuousClock.Instant?
    /// Relays with tunnels running that the last list left out.
    private var unlisted: [HostPort: Unlisted] = [:]

    private struct Unlisted {
        /// Since when it has had no tunnel up; nil while one is.
        var downSince: ContinuousClock.Instant?
    }

    init(configured: Target) {
        self.configured = configured
    }

    mutating func start() -> [Action] {
        self.running[self.configured.address] = self.configured
        return [.start(self.configured)]
    }

    /// A relay sent the list of relays sharing its store. Entries that are not `host:port` are skipped.
    mutating func learned(_ relays: [ControlMessage.RelayEndpoint], now: ContinuousClock.Instant) -> [Action] {
        // At most ``maxRelays``: a list is the relays' word, and each entry costs `connections` tunnels.
        let targets = Array(
            relays.compactMap { endpoint -> Target? in
                guard let address = try? HostPort(parsing: endpoint.address) else { return nil }
                return Target(address: address, serverName: endpoint.serverName.isEmpty ? address.host : endpoint.serverName)
            }.prefix(Self.maxRelays)
        )
        guard !targets.isEmpty else { return [] }
        self.listed = targets
        if self.unservedSince == nil { self.unservedSince = now }
        var actions: [Action] = []
        let wanted = Set(targets.map(\.address))
        for target in targets where self.running[target.address] == nil {
            self.running[target.address] = target
            actions.append(.start(target))
        }
        // Relays that left the list are watched (see `tick`); the configured address stays until a listed relay
        // serves.
        for address in self.running.keys where !wanted.contains(address) && address != self.configured.address && self.unlisted[address] == nil {
            self.unlisted[address] = Unlisted()
        }
        for address in wanted { self.unlisted[address] = nil }
        return actions
    }

    /// Looks at which relays serve (`connected`: tunnels up, by address): retires the configured address once a
    /// listed relay serves, and dials it again when none has served for ``rediscoverAfter``.
    mutating func tick(connected: [HostPort: Int], now: ContinuousClock.Instant) -> [Action] {
        guard !self.listed.isEmpty else { return [] }
        var actions: [Action] = []
        for (address, entry) in self.unlisted {
            if connected[address, default: 0] > 0 {
                self.unlisted[address]?.downSince = nil
            } else if let since = entry.downSince {
                guard now - since >= Self.retireAfter else { continue }
                self.unlisted[address] = nil
                if let target = self.running.removeValue(forKey: address) { actions.append(.stop(target)) }
            } else {
                self.unlisted[address]?.downSince = now
            }
        }
        return actions + self.tickConfigured(connected: connected, now: now)
    }

    /// Retires or redials the configured address (see the type's description).
    private mutating func tickConfigured(connected: [HostPort: Int], now: ContinuousClock.Instant) -> [Action] {
        let listedAddresses = Set(self.listed.map(\.address))
        let serving = listedAddresses.contains { connected[$0, default: 0] > 0 }
        if serving {
            self.unservedSince = nil
            if !listedAddresses.contains(self.configured.address), self.running[self.configured.address] != nil {
                self.running[self.configured.address] = nil
                return [.stop(self.configured)]
            }
            return []
        }
        let since = self.unservedSince ?? now
        self.unservedSince = since
        if now - since >= Self.rediscoverAfter, self.running[self.configured.address] == nil {
            self.running[self.configured.address] = self.configured
            return [.start(self.configured)]
        }
        return []
    }
}
