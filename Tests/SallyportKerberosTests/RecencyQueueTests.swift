import Testing

@testable import SallyportKerberos

@Suite struct RecencyQueueTests {
    @Test func popsTheLeastRecentlyUsedAndSkipsStaleRecords() {
        var queue = RecencyQueue<String>()
        var latest: [String: UInt64] = [:]
        for (tick, key) in ["a", "b", "c", "a", "b"].enumerated() {
            queue.touched(key, at: UInt64(tick))
            latest[key] = UInt64(tick)
        }
        #expect(queue.popOldest { latest[$0] == $1 } == "c")
        latest["c"] = nil
        #expect(queue.popOldest { latest[$0] == $1 } == "a")
        latest["a"] = nil
        #expect(queue.popOldest { latest[$0] == $1 } == "b")
        latest["b"] = nil
        #expect(queue.popOldest { latest[$0] == $1 } == nil)
    }

    @Test func staleRecordsAreCompactedAway() {
        var queue = RecencyQueue<Int>()
        var latest: [Int: UInt64] = [:]
        for tick in 0..<100_000 {
            let key = tick % 10
            queue.compact(liveCount: latest.count) { latest[$0] == $1 }
            queue.touched(key, at: UInt64(tick))
            latest[key] = UInt64(tick)
        }
        var popped: [Int] = []
        while let key = queue.popOldest(where: { latest[$0] == $1 }) {
            popped.append(key)
            latest[key] = nil
        }
        #expect(popped == Array(0..<10))
    }
}
