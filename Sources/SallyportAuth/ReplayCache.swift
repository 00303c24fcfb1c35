import Foundation

/// Sign-in states already used, for `lifetime` (a state older than that is refused by its sealed cookie
/// anyway). Entries expire from the front in the order they were added, so each use costs O(1) amortised,
/// however many sign-ins are under way; at `capacity` the oldest is forgotten.
struct ReplayCache: Sendable {
    let lifetime: TimeInterval
    let capacity: Int
    private var used: Set<String> = []
    /// In the order used, oldest first; `head` marks the first still held.
    private var order: [(state: String, at: Date)] = []
    private var head = 0

    init(lifetime: TimeInterval, capacity: Int = 100_000) {
        self.lifetime = lifetime
        self.capacity = max(1, capacity)
    }

    /// How many states are held (for tests).
    var count: Int { self.used.count }

    /// Marks `state` as used at `now`; false when it already was (a replay).
    mutating func consume(_ state: String, now: Date) -> Bool {
        while self.head < self.order.count, now.timeIntervalSince(self.order[self.head].at) >= self.lifetime || self.used.count >= self.capacity {
            self.used.remove(self.order[self.head].state)
            self.head += 1
        }
        if self.head > 1024, self.head * 2 > self.order.count {
            self.order.removeFirst(self.head)
            self.head = 0
        }
        guard self.used.insert(state).inserted else { return false }
        self.order.append((state, now))
        return true
    }
}
