import Synchronization

/// Which connectors cannot reach which app's backend: learnt from the connectors' own "backend unreachable"
/// answers (connect refused or timed out, DNS). Such a connector gets none of the app's requests for a
/// back-off period while another connector of the group can take them; after it, one request probes it
/// again. Each failure in a row doubles the period, up to ``maximum``.
final class Reachability: Sendable {
    struct Key: Hashable {
        var connectorID: String
        var app: String
    }

    struct Entry {
        var until: ContinuousClock.Instant
        var backoff: Duration
    }

    static let first: Duration = .seconds(10)
    static let maximum: Duration = .seconds(160)

    private let entries = Mutex<[Key: Entry]>([:])
    /// How many entries there are: requests of an app with none skip the lock.
    private let count = Atomic<Int>(0)

    init() {}

    /// Records that `connectorID` could not reach `app`'s backend; returns the back-off that starts now, or nil
    /// when one is running already (a request that was on its way).
    func failed(connectorID: String, app: String, now: ContinuousClock.Instant = .now) -> Duration? {
        self.entries.withLock { entries in
            let key = Key(connectorID: connectorID, app: app)
            var backoff = Self.first
            if let previous = entries[key] {
                // Failing again after the probe: twice as long. A failure while already avoided (a request
                // that was on its way) changes nothing.
                if now < previous.until { return nil }
                backoff = min(previous.backoff * 2, Self.maximum)
            }
            entries[key] = Entry(until: now + backoff, backoff: backoff)
            self.count.store(entries.count, ordering: .relaxed)
            return backoff
        }
    }

    /// Records that `connectorID` answered for `app`; returns whether it had been avoided.
    @discardableResult
    func succeeded(connectorID: String, app: String) -> Bool {
        guard self.count.load(ordering: .relaxed) > 0 else { return false }
        return self.entries.withLock { entries in
            let removed = entries.removeValue(forKey: Key(connectorID: connectorID, app: app)) != nil
            self.count.store(entries.count, ordering: .relaxed)
            return removed
        }
    }

    /// The connectors to avoid for `app` now.
    func avoided(app: String, now: ContinuousClock.Instant = .now) -> Set<String> {
        guard self.count.load(ordering: .relaxed) > 0 else { return [] }
        return self.entries.withLock { entries in
            Set(entries.compactMap { key, entry in key.app == app && now < entry.until ? key.connectorID : nil })
        }
    }

    /// The connectors whose last answer for `app` was "backend unreachable", whether or not their back-off
    /// still runs: what the status shows, red until one of them answers again.
    func failing(app: String) -> Set<String> {
        guard self.count.load(ordering: .relaxed) > 0 else { return [] }
        return self.entries.withLock { entries in Set(entries.keys.filter { $0.app == app }.map(\.connectorID)) }
    }

    /// Forgets a connector (removed, or its tunnels gone).
    func forget(connectorID: String) {
        self.entries.withLock { entries in
            entries = entries.filter { $0.key.connectorID != connectorID }
            self.count.store(entries.count, ordering: .relaxed)
        }
    }
}
