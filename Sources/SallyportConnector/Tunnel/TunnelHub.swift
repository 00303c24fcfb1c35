import SallyportTunnel
import SallyportWire
import Synchronization

/// What the connector's tunnel slots share: a way to ask every slot for new connections, and the control
/// streams that are up (certificate renewal sends its request on any one of them).
final class TunnelHub: Sendable {
    typealias Sender = @Sendable (ControlMessage) async throws -> Void

    private struct State {
        var rollSubscribers: [Int: AsyncStream<String>.Continuation] = [:]
        var senders: [Int: (relay: String, send: Sender)] = [:]
        var nextID = 0
    }

    private let state = Mutex(State())
    /// Relay lists the relays sent (welcome, then updates), for the roster; the newest when it lags.
    let relayLists: AsyncStream<[ControlMessage.RelayEndpoint]>
    private let relayListSink: AsyncStream<[ControlMessage.RelayEndpoint]>.Continuation

    /// A relay's word that this connector is not registered (removed, or replaced by `register --force`): the
    /// connector stops, since no reconnection can help.
    let refusals: AsyncStream<ConnectorNotRegistered>
    private let refusalSink: AsyncStream<ConnectorNotRegistered>.Continuation

    init() {
        (self.relayLists, self.relayListSink) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
        (self.refusals, self.refusalSink) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// A relay refused this connector for good.
    func notRegistered(_ refusal: ConnectorNotRegistered) { self.refusalSink.yield(refusal) }

    /// A relay said which relays share its store.
    func learned(_ relays: [ControlMessage.RelayEndpoint]) { self.relayListSink.yield(relays) }

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

    /// Makes a configured connection's control stream to `relay` (`host:port`) available; returns the handle
    /// to remove it.
    func addSender(relay: String, _ sender: @escaping Sender) -> Int {
        self.state.withLock { state in
            defer { state.nextID += 1 }
            state.senders[state.nextID] = (relay, sender)
            return state.nextID
        }
    }

    func removeSender(_ id: Int) { _ = self.state.withLock { $0.senders.removeValue(forKey: id) } }

    /// Tunnel connections that are configured and up.
    var connectedCount: Int { self.state.withLock { $0.senders.count } }

    /// Configured connections that are up, by relay address.
    var connectedByRelay: [String: Int] {
        self.state.withLock { state in state.senders.values.reduce(into: [:]) { counts, sender in counts[sender.relay, default: 0] += 1 } }
    }

    /// Some configured connection's control stream, if any is up.
    var anySender: Sender? { self.state.withLock { $0.senders.values.first?.send } }
}

/// The relay's registry has no such connector: it was removed (`sallyport connectors remove`) or registered
/// again under a new identity (`register --force`). Dialling again cannot help, so the connector stops with
/// ``exitStatus`` (which its unit's `RestartPreventExitStatus=` names).
public struct ConnectorNotRegistered: Error, CustomStringConvertible, Sendable {
    /// The exit status of a connector stopped by this: distinct from a configuration error (2).
    public static let exitStatus: Int32 = 3
    /// The relay that said so (`host:port`).
    public let relay: String
    /// The relay's words.
    public let message: String

    public var description: String {
        "\(self.relay) says this connector is not registered (removed, or registered again with --force): \(self.message)"
    }
}
