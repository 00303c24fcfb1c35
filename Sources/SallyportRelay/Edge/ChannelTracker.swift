import NIOCore
import Synchronization

/// The open connections of one listener, so shutdown can quiesce them, wait for them, and close stragglers.
final class ChannelTracker: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: any Channel] = [:]
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    func add(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        self.state.withLock { $0.channels[id] = channel }
        channel.closeFuture.whenComplete { _ in
            let waiters = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
                state.channels[id] = nil
                guard state.channels.isEmpty else { return [] }
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.resume() }
        }
    }

    var count: Int { self.state.withLock { $0.channels.count } }

    /// Asks every connection to finish its current work and close (`ChannelShouldQuiesceEvent`).
    func quiesce() {
        for channel in self.state.withLock({ Array($0.channels.values) }) {
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
    }

    /// Closes every connection now.
    func closeAll() {
        for channel in self.state.withLock({ Array($0.channels.values) }) {
            channel.close(promise: nil)
        }
    }

    /// Returns when no connection is open or `timeout` passed; true when all closed.
    func waitUntilEmpty(timeout: Duration) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let done = self.state.withLock { state -> Bool in
                        if state.channels.isEmpty { return true }
                        state.waiters.append(continuation)
                        return false
                    }
                    if done { continuation.resume() }
                }
                return true
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next()!
            if !first {
                // Release the waiter so the group can finish.
                let waiters = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
                    defer { state.waiters = [] }
                    return state.waiters
                }
                for waiter in waiters { waiter.resume() }
            }
            group.cancelAll()
            return first
        }
    }
}
