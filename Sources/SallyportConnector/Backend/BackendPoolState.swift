/// The backend pool's bookkeeping as a value: which idle connections there are per key, since when, and which
/// to close. ``BackendPool`` does the I/O it asks for; this type never touches a socket.
///
/// - Idle connections are kept per ``BackendKey`` (newest reused first), at most `maxIdlePerKey` per key and
///   `maxIdleTotal` in all: past the total, the connection idle longest is closed to make room.
/// - A connection that closes while idle is forgotten at once (``closed(_:)``), and a key with no idle
///   connection left is dropped, so keys bound to one user vanish with their connections.
/// - A connection idle longer than `idleTimeout` is never handed out; ``expire(now:)`` closes such ones.
struct BackendPoolState<Connection: AnyObject> {
    struct Entry {
        var connection: Connection
        var parked: ContinuousClock.Instant
    }

    let maxIdlePerKey: Int
    /// How many of a key's newest idle connections ``lease(_:now:near:)`` looks through for a near one.
    static var nearScan: Int { 8 }
    let maxIdleTotal: Int
    let idleTimeout: Duration
    /// Per key, oldest first.
    private(set) var idle: [BackendKey: [Entry]] = [:]
    /// The key each idle connection is parked under.
    private var parkedKey: [ObjectIdentifier: BackendKey] = [:]
    var idleCount: Int { self.parkedKey.count }

    init(maxIdlePerKey: Int, maxIdleTotal: Int, idleTimeout: Duration) {
        self.maxIdlePerKey = maxIdlePerKey
        self.maxIdleTotal = max(maxIdleTotal, 1)
        self.idleTimeout = idleTimeout
    }

    /// The newest idle connection for `key` that has not been idle too long, or nil (open a new one); also the
    /// expired connections met on the way, to close.
    ///
    /// A connection for which `near` holds (one on the caller's event loop) is taken before newer ones, among the
    /// ``nearScan`` newest: the exchange then runs without a thread between its two sides.
    mutating func lease(
        _ key: BackendKey, now: ContinuousClock.Instant, near: (Connection) -> Bool = { _ in true }
    ) -> (reuse: Connection?, close: [Connection]) {
        guard var entries = self.idle[key] else { return (nil, []) }
        var close: [Connection] = []
        var reuse: Connection?
        if let index = entries.indices.reversed().prefix(Self.nearScan).first(where: { near(entries[$0].connection) }),
            now - entries[index].parked < self.idleTimeout
        {
            let entry = entries.remove(at: index)
            self.parkedKey[ObjectIdentifier(entry.connection)] = nil
            self.idle[key] = entries.isEmpty ? nil : entries
            return (entry.connection, [])
        }
        while let last = entries.popLast() {
            self.parkedKey[ObjectIdentifier(last.connection)] = nil
            if now - last.parked < self.idleTimeout {
                reuse = last.connection
                break
            }
            close.append(last.connection)
        }
        self.idle[key] = entries.isEmpty ? nil : entries
        return (reuse, close)
    }

    /// Parks a connection after a clean exchange. Returns the connections to close: this one when its key is
    /// full, or the one idle longest when the pool is.
    mutating func release(_ connection: Connection, key: BackendKey, now: ContinuousClock.Instant) -> [Connection] {
        var entries = self.idle[key, default: []]
        guard entries.count < self.maxIdlePerKey else { return [connection] }
        entries.append(Entry(connection: connection, parked: now))
        self.idle[key] = entries
        self.parkedKey[ObjectIdentifier(connection)] = key
        guard self.idleCount > self.maxIdleTotal, let oldest = self.removeOldest() else { return [] }
        return [oldest]
    }

    /// Forgets a connection that closed (it may or may not be idle).
    mutating func closed(_ connection: Connection) {
        guard let key = self.parkedKey.removeValue(forKey: ObjectIdentifier(connection)), var entries = self.idle[key],
            let index = entries.firstIndex(where: { $0.connection === connection })
        else { return }
        entries.remove(at: index)
        self.idle[key] = entries.isEmpty ? nil : entries
    }

    /// Removes every connection idle for `idleTimeout` or longer and returns them, to close.
    mutating func expire(now: ContinuousClock.Instant) -> [Connection] {
        var expired: [Connection] = []
        for (key, entries) in self.idle {
            // Oldest first: the expired ones are a prefix.
            let cut = entries.firstIndex { now - $0.parked < self.idleTimeout } ?? entries.count
            guard cut > 0 else { continue }
            for entry in entries[..<cut] {
                expired.append(entry.connection)
                self.parkedKey[ObjectIdentifier(entry.connection)] = nil
            }
            self.idle[key] = cut == entries.count ? nil : Array(entries[cut...])
        }
        return expired
    }

    /// Removes and returns every idle connection (shutdown).
    mutating func removeAll() -> [Connection] {
        defer {
            self.idle = [:]
            self.parkedKey = [:]
        }
        return self.idle.values.flatMap { $0.map(\.connection) }
    }

    private mutating func removeOldest() -> Connection? {
        guard let (key, _) = self.idle.min(by: { $0.value[0].parked < $1.value[0].parked }) else { return nil }
        var entries = self.idle[key]!
        let oldest = entries.removeFirst()
        self.parkedKey[ObjectIdentifier(oldest.connection)] = nil
        self.idle[key] = entries.isEmpty ? nil : entries
        return oldest.connection
    }
}
