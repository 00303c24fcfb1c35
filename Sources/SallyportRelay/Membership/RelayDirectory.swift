import Foundation
import Logging
import SallyportState
import SallyportWire
import Synchronization

/// The relays sharing this relay's store, as connectors should dial them: this relay announces itself in the
/// store every few seconds (with the apps it serves), reads who else did recently, and tells every tunnel
/// when the list changes. Announcements are dated, and judged, by the database's clock. A relay that stops
/// announcing (killed, cut off) drops out after ``expiry``; one that shuts down removes itself at once.
///
/// Connectors are sent a list only when the store is shared (PostgreSQL), and only once this relay has read
/// the store: a relay alone, or one that cannot read the store yet, sends none, and connectors keep what they
/// dial.
final class RelayDirectory: Sendable {
    private struct State {
        /// Nil until the store was read (and always for a store of one relay).
        var relays: [ControlMessage.RelayEndpoint]?
        var subscribers: [Int: AsyncStream<[ControlMessage.RelayEndpoint]>.Continuation] = [:]
        var nextSubscriber = 0
        var others: [RelayRecord] = []
        /// Relays whose apps differ from this one's, as last logged.
        var disagreeing: [String] = []
        /// Whether another relay's announcement under this relay's address was reported.
        var reportedTwin = false
    }

    /// This relay as connectors dial it.
    let own: ControlMessage.RelayEndpoint
    let store: any RelayStore
    /// Whether other relays share the store (PostgreSQL).
    let shared: Bool
    let software: String
    let digest: @Sendable () -> String
    let logger: Logger
    private let state = Mutex(State())
    private let started = Date()

    /// How often this relay announces itself.
    static let heartbeat: Duration = .seconds(5)
    /// How long after its last announcement a relay is still listed.
    static let expiry: TimeInterval = 20

    /// `digest` is the apps digest to announce.
    init(
        own: ControlMessage.RelayEndpoint, store: any RelayStore, shared: Bool, software: String, digest: @escaping @Sendable () -> String,
        logger: Logger
    ) {
        self.own = own
        self.store = store
        self.shared = shared
        self.software = software
        self.digest = digest
        self.logger = logger
    }

    /// Every relay connectors should keep tunnels to, this one included, by address; nil when connectors are
    /// to keep to what they dial (one relay, or the store not read yet).
    var relays: [ControlMessage.RelayEndpoint]? { self.state.withLock { $0.relays } }

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

    /// Announces this relay and reads the list every `interval` until cancelled (announcing every ``heartbeat``,
    /// and at once when its apps changed); then leaves: removed from the store, and no longer in the list it
    /// gives connectors that still connect while it drains.
    func run(interval: Duration = .seconds(1)) async {
        var lastAnnounced = ContinuousClock.now
        var announcedDigest = self.digest()
        var failing = false
        while (try? await Task.sleep(for: interval)) != nil {
            let current = self.digest()
            let announce = ContinuousClock.now - lastAnnounced >= Self.heartbeat || current != announcedDigest
            if await self.poll(announce: announce) {
                if announce {
                    lastAnnounced = .now
                    announcedDigest = current
                }
                if failing { self.logger.notice("reading the relay list again") }
                failing = false
            } else {
                // The list stays as it was: connectors keep their tunnels to every relay they know.
                if !failing { self.logger.warning("cannot read or update the relay list; keeping the last one") }
                failing = true
            }
        }
        // In a task of its own: this one is cancelled, and a store may refuse work for a cancelled task.
        let (store, address) = (self.store, self.own.address)
        _ = await Task { try? await store.removeRelay(address: address) }.value
        self.publish(self.relays?.filter { $0.address != self.own.address })
    }

    /// One round: announces this relay if `announce`, reads the list, and tells subscribers what changed.
    /// Returns false (logged at debug) if the store could not be used.
    @discardableResult
    func poll(announce: Bool = true) async -> Bool {
        do {
            let now = try await self.store.databaseTime()
            if announce {
                try await self.store.announceRelay(
                    RelayRecord(
                        address: self.own.address, serverName: self.own.serverName, software: self.software, appsDigest: self.digest(),
                        startedAt: self.started, seenAt: now
                    )
                )
            }
            self.update(try await self.store.relays(seenSince: now.addingTimeInterval(-Self.expiry)), ownDigest: self.digest())
            return true
        } catch {
            self.logger.debug("relay list not read", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// Takes a fresh read of the store; tells subscribers if the list changed, and logs when relays start or
    /// stop serving other apps than this one (`ownDigest`).
    func update(_ records: [RelayRecord], ownDigest: String) {
        let others = records.filter { $0.address != self.own.address }
        let twin = records.contains { $0.address == self.own.address && abs($0.startedAt.timeIntervalSince(self.started)) > 0.001 }
        let (disagreeing, previously, reportTwin) = self.state.withLock { state in
            let disagreeing = others.filter { $0.appsDigest != ownDigest }.map(\.address).sorted()
            defer {
                state.others = others
                state.disagreeing = disagreeing
                if twin { state.reportedTwin = true }
            }
            return (disagreeing, state.disagreeing, twin && !state.reportedTwin)
        }
        if reportTwin {
            self.logger.error(
                "another relay announces this relay's tunnel.address; give each relay its own, or connectors reach only one of them",
                metadata: ["address": "\(self.own.address)"]
            )
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
        guard self.shared else { return }
        let relays = (others.map { ControlMessage.RelayEndpoint(address: $0.address, serverName: $0.serverName) } + [self.own]).sorted { $0.address < $1.address }
        self.publish(relays)
    }

    /// Makes `relays` the list, telling subscribers if it changed.
    private func publish(_ relays: [ControlMessage.RelayEndpoint]?) {
        let (changed, subscribers) = self.state.withLock { state -> (Bool, [AsyncStream<[ControlMessage.RelayEndpoint]>.Continuation]) in
            guard relays != state.relays else { return (false, []) }
            state.relays = relays
            return (true, Array(state.subscribers.values))
        }
        guard changed, let relays else { return }
        self.logger.info("relays sharing the store", metadata: ["relays": "\(relays.map(\.address).joined(separator: ","))"])
        for subscriber in subscribers { subscriber.yield(relays) }
    }
}
