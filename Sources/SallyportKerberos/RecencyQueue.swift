/// Which key was used least recently, in O(1) amortised: every use is appended with its tick, and records a
/// later use made stale are skipped (and compacted away once they outnumber the live ones).
struct RecencyQueue<Key: Hashable>: Sendable where Key: Sendable {
    private var records: [(key: Key, tick: UInt64)] = []
    private var head = 0

    /// Records a use of `key` at `tick` (ticks increase).
    mutating func touched(_ key: Key, at tick: UInt64) {
        self.records.append((key, tick))
    }

    /// Removes and returns the least recently used key among those `isCurrent` accepts (its record is the
    /// key's latest use and it may be dropped); nil when none is.
    mutating func popOldest(where isCurrent: (Key, UInt64) -> Bool) -> Key? {
        while self.head < self.records.count {
            let record = self.records[self.head]
            self.head += 1
            if isCurrent(record.key, record.tick) { return record.key }
        }
        return nil
    }

    /// Drops stale records when they are most of the queue. `isLive`: whether a record is a key's latest use.
    mutating func compact(liveCount: Int, isLive: (Key, UInt64) -> Bool) {
        guard self.records.count - self.head > 2 * liveCount + 1024 else { return }
        self.records = self.records[self.head...].filter { isLive($0.key, $0.tick) }
        self.head = 0
    }
}
