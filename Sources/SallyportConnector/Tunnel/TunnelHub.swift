import SallyportTunnel
import SallyportWire
import Synchronization

/// What the connector's tunnel slots share: a way to ask every slot for new connections, and the control
/// streams that are up (certificate renewal sends its request on any one of them).
final class TunnelHub: Sendable {
    typealias Sender = @Sendable (ControlMessage) async throws -> Void

    private struct State {
        var rollSubscribers: [Int: AsyncStream<String>.Continuation] = [:]
        var senders: [Int: Sender] = [:]
        var nextID = 0
    }

    private let state = Mutex(State())

    /// Roll requests for one slot, until the stream is dropped.
    func rolls() -> AsyncStream<String> {
        let (stream, continuation) = AsyncStream<String>.makeStream()
        let id = self.state.withLock { state in
            defer { state.nextID += 1 }
            state.rollSubscribers[state.nextID] = continuation
            return state.nextID
        }
        continuation.onTermination = { _ in _ = self.state.withLock { $0.rollSubscribers.removeValue(forKey: id) } }
        return stream
    }

    /// Asks every slot to replace its connection (make before break).
    func roll(reason: String) {
        for subscriber in self.state.withLock({ Array($0.rollSubscribers.values) }) { subscriber.yield(reason) }
    }

    /// Makes a configured connection's control stream available; returns the handle to remove it.
    func addSender(_ sender: @escaping Sender) -> Int {
        self.state.withLock { state in
            defer { state.nextID += 1 }
            state.senders[state.nextID] = sender
            return state.nextID
        }
    }

    func removeSender(_ id: Int) { _ = self.state.withLock { $0.senders.removeValue(forKey: id) } }

    /// Tunnel connections that are configured and up.
    var connectedCount: Int { self.state.withLock { $0.senders.count } }

    /// Some configured connection's control stream, if any is up.
    var anySender: Sender? { self.state.withLock { $0.senders.values.first } }
}
