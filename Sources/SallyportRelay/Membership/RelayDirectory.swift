import Foundation
import Logging
import SallyportState
import SallyportWire
import Synchronization

/// The relays sharing this relay's store, as connectors should dial them: this relay announces itself in the
/// store every few seconds (with the apps it serves), reads who else did recently, and tells every tunnel
/// when the list changes. A relay that stops announcing (killed, cut off) drops out after ``expiry``; one that
/// shuts down removes itself at once.
final class RelayDirectory: Sendable {
    private struct State {
        var relays: [ControlMessage.RelayEndpoint]
        var subscribers: [Int: AsyncStream<[ControlMessage.RelayEndpoint]>.Continuation] = [:]
        var nextSubscriber = 0
        var others: [RelayRecord] = []
        /// Relays whose apps differ from this one's, as last logged.
        var disagreeing: [String] = []
    }

    /// This relay as connectors dial it.
    let own: ControlMessage.RelayEndpoint
    let store: any RelayStore
    let logger: Logger
    private let state: Mutex<State>
    private let started = Date()

    /// How often this relay announces itself.
    static let heartbeat: Duration = .seconds(5)
    /// How long after its last announcement a relay is still listed.
    static let expiry: TimeInterval = 20

    init(own: ControlMessage.RelayEndpoint, store: any RelayStore, logger: Logger) {
        self.own = own
        self.store = store
        self.logger = logger
        self.state = Mutex(State(relays: [own]))
    }

    /// Every relay connectors should keep tunnels to, this one included, by address.
    var relays: [ControlMessage.RelayEndpoint] { self.state.withLock { $0.relays } }

    /// The other relays' last announcements (for the status page).
    var others: [RelayRecord] { self.state.withLock { $0.others } }

    /// The list on every change, until the consumer stops iterating (the newest when it lags).
    func updates() -> AsyncStream<[ControlMessage.RelayEndpoint]> {
        let (stream, continuation) = AsyncStream<[ControlMessage.RelayEndpoint]>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id = self.state.withLock { state in
            defer { state.nextSubscriber += 1 }
            state.subscribers[state.nextSubscriber] = continuation
            return state.nextSubscriber
        }
        continuation.onTermination = { _ in _ = self.state.withLock { $0.subscribers.removeValue(forKey: id) } }
        return stream
    }

    /// Announces this relay every ``heartbeat`` and reads the list every `interval` until cancelled; then
    /// removes this relay from the store. `digest` is the apps digest to announce.
    func run(interval: Duration = .seconds(1), software: String, digest: @escaping @Sendable () -> String) async {
        var lastAnnounced = ContinuousClock.now - Self.heartbeat
        var announcedDigest = ""
        var failing = false
        while !Task.isCancelled {
            do {
                // Every heartbeat, and at once when this relay's apps changed.
                let current = digest()
                if ContinuousClock.now - lastAnnounced >= Self.heartbeat || current != announcedDigest {
                    try await self.store.announceRelay(
                        RelayRecord(
                            address: self.own.address, serverName: self.own.serverName, software: software, appsDigest: current, startedAt: self.started,
                            seenAt: Date()
                        )
                    )
                    lastAnnounced = .now
                    announcedDigest = current
                }
                let records = try await self.store.relays(seenSince: Date().addingTimeInterval(-Self.expiry))
                self.update(records, ownDigest: digest())
                failing = false
            } catch {
                // The list stays as it was: connectors keep their tunnels to every relay they know.
                if !failing { self.logger.warning("cannot read or update the relay list; keeping the last one", metadata: ["error": "\(error)"]) }
                failing = true
            }
            try? await Task.sleep(for: interval)
        }
        _ = try? await self.store.removeRelay(address: self.own.address)
    }

    /// Takes a fresh read of the store; tells subscribers if the list changed, and logs when relays start or
    /// stop serving other apps than this one (`ownDigest`).
    func update(_ records: [RelayRecord], ownDigest: String) {
        var relays = records.filter { $0.address != self.own.address }.map { ControlMessage.RelayEndpoint(address: $0.address, serverName: $0.serverName) }
        relays.append(self.own)
        relays.sort { $0.address < $1.address }
        let (changed, subscribers) = self.state.withLock { state in
            state.others = records.filter { $0.address != self.own.address }
            guard relays != state.relays else { return (false, [AsyncStream<[ControlMessage.RelayEndpoint]>.Continuation]()) }
            state.relays = relays
            return (true, Array(state.subscribers.values))
        }
        let disagreeing = records.filter { $0.address != self.own.address && $0.appsDigest != ownDigest }.map(\.address).sorted()
        let previously = self.state.withLock { state in
            defer { state.disagreeing = disagreeing }
            return state.disagreeing
        }
        if disagreeing != previously {
            if disagreeing.isEmpty {
                self.logger.notice("every relay serves the same apps again", metadata: ["digest": "\(ownDigest)"])
            } else {
                // Each relay reads its own app directory: until they hold the same files, a connector serves
                // whichever relay's apps reached it last.
                self.logger.warning(
                    "other relays serve other apps than this one; give every relay the same app files",
                    metadata: ["relays": "\(disagreeing.joined(separator: ","))", "digest": "\(ownDigest)"]
                )
            }
        }
        guard changed else { return }
        self.logger.info("relays sharing the store changed", metadata: ["relays": "\(relays.map(\.address).joined(separator: ","))"])
        for subscriber in subscribers { subscriber.yield(relays) }
    }
}
