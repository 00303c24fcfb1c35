import NIOCore
import Synchronization

/// The open connections of one listener, so shutdown can quiesce them, wait for them, and close stragglers.
final class ChannelTracker: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: any Channel] = [:]
        var waiters: [CheckedContinuation<Void, Never>] = []
        var quiescing = false
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
    ///
    /// A connection still in its TLS handshake has no HTTP handler yet to act on the event: once its pipeline
    /// is complete, ``joinQuiescing(_:)`` delivers it again.
    func quiesce() {
        let channels = self.state.withLock { state in
            state.quiescing = true
            return Array(state.channels.values)
        }
        for channel in channels {
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
    }

    /// Called on the channel's event loop once its HTTP handlers are in place: if shutdown has begun, they
    /// get the quiesce event they may have missed. (If ``quiesce()`` runs later, its event reaches them.)
    func joinQuiescing(_ channel: any Channel) {
        guard self.state.withLock({ $0.quiescing }) else { return }
        channel.eventLoop.execute { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
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
