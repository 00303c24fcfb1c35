import Glibc
import NIOCore
import Synchronization

/// The open connections of one listener, so shutdown can quiesce them, wait for them, and close stragglers;
/// with limits, it also turns away connections over the listener's total or one client's share.
final class ChannelTracker: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: any Channel] = [:]
        var perClient: [String: Int] = [:]
        var waiters: [CheckedContinuation<Void, Never>] = []
        var quiescing = false
    }

    private let state = Mutex(State())
    private let maxTotal: Int
    private let maxPerClient: Int

    init(maxTotal: Int = .max, maxPerClient: Int = .max) {
        self.maxTotal = maxTotal
        self.maxPerClient = maxPerClient
    }

    /// Adds a new connection unless it would exceed a limit; false: the caller closes it.
    func add(_ channel: any Channel) -> Bool {
        let id = ObjectIdentifier(channel)
        let client = Self.clientKey(channel.remoteAddress)
        let admitted = self.state.withLock { state -> Bool in
            let fromClient = state.perClient[client, default: 0]
            guard state.channels.count < self.maxTotal, fromClient < self.maxPerClient else { return false }
            state.channels[id] = channel
            state.perClient[client] = fromClient + 1
            return true
        }
        guard admitted else { return false }
        channel.closeFuture.whenComplete { _ in self.forget(channel) }
        return true
    }

    /// Stops tracking a connection (it closed, or turned out to be another listener's: a connector on the
    /// public port). Counted once, however often called.
    func forget(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        let client = Self.clientKey(channel.remoteAddress)
        let waiters = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard state.channels.removeValue(forKey: id) != nil else { return [] }
            if let count = state.perClient[client], count > 1 { state.perClient[client] = count - 1 } else { state.perClient[client] = nil }
            guard state.channels.isEmpty else { return [] }
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    var count: Int { self.state.withLock { $0.channels.count } }

    /// Whose share a connection counts against: its IPv4 address, or the /64 of its IPv6 address (one
    /// subscriber's usual allocation, so rotating addresses within it gains nothing).
    static func clientKey(_ address: SocketAddress?) -> String {
        guard case .v6 = address, let text = address?.ipAddress else { return address?.ipAddress ?? "unknown" }
        var parsed = in6_addr()
        guard inet_pton(AF_INET6, text, &parsed) == 1 else { return text }
        let bytes = withUnsafeBytes(of: parsed) { Array($0) }
        // An IPv4 client on a dual-stack socket (::ffff:a.b.c.d) is its IPv4 address.
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
            return bytes[12...].map(String.init).joined(separator: ".")
        }
        return bytes[0..<8].map { String($0, radix: 16) }.joined(separator: ":") + "::/64"
    }

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
