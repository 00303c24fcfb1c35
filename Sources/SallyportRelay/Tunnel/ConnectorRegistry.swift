import HTTPTypes
import NIOCore
import NIOHTTP2
import NIOHTTPTypes
import NIOHTTPTypesHTTP2
import SallyportHTTP
import Synchronization

/// One connector's tunnel connection as the relay sees it.
public final class TunnelConnection: Sendable {
    /// A stream to the connector carrying one request.
    public typealias Stream = NIOAsyncChannel<HTTPResponsePart, HTTPRequestPart>

    /// Unique within this relay process.
    public let id: UInt64
    /// The connector's name (from its hello).
    public let connector: String
    /// The group it serves.
    public let group: String
    /// Peer address, for logs.
    public let remoteAddress: String

    let channel: any Channel
    let multiplexer: NIOHTTP2Handler.AsyncStreamMultiplexer<Void>
    private let inFlight = Atomic<Int>(0)
    private let acked = Atomic<UInt64>(0)
    private let isDraining = Atomic<Bool>(false)

    init(id: UInt64, connector: String, group: String, remoteAddress: String, channel: any Channel, multiplexer: NIOHTTP2Handler.AsyncStreamMultiplexer<Void>) {
        self.id = id
        self.connector = connector
        self.group = group
        self.remoteAddress = remoteAddress
        self.channel = channel
        self.multiplexer = multiplexer
    }

    /// Requests currently in flight on this connection.
    public var activeRequests: Int { self.inFlight.load(ordering: .relaxed) }
    /// The newest configuration generation the connector has applied.
    public var appliedGeneration: UInt64 { self.acked.load(ordering: .acquiring) }
    /// Whether the connector announced it is going away.
    public var draining: Bool { self.isDraining.load(ordering: .relaxed) }

    func markApplied(_ generation: UInt64) {
        var current = self.acked.load(ordering: .relaxed)
        while generation > current {
            let (exchanged, original) = self.acked.compareExchange(expected: current, desired: generation, ordering: .acquiringAndReleasing)
            if exchanged { break }
            current = original
        }
    }

    func markDraining() { self.isDraining.store(true, ordering: .relaxed) }

    /// Opens a request stream. The caller must call ``finished()`` once the stream is done.
    func openStream() async throws -> Stream {
        self.inFlight.add(1, ordering: .relaxed)
        do {
            return try await self.multiplexer.openStream { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTPClientCodec())
                    try channel.pipeline.syncOperations.addHandler(EndWriteTracker<HTTPRequestPart>())
                    return try Stream(wrappingChannelSynchronously: channel)
                }
            }
        } catch {
            self.inFlight.subtract(1, ordering: .relaxed)
            throw error
        }
    }

    /// Balances ``openStream()``.
    func finished() { self.inFlight.subtract(1, ordering: .relaxed) }
}

/// The live tunnel connections, by connector group, and the choice of one for each request.
public final class ConnectorRegistry: Sendable {
    private struct State {
        var groups: [String: [TunnelConnection]] = [:]
        var cursor = 0
    }

    private let state = Mutex(State())
    private let nextID = Atomic<UInt64>(1)

    /// Creates an empty registry.
    public init() {}

    func makeID() -> UInt64 { self.nextID.wrappingAdd(1, ordering: .relaxed).oldValue }

    func add(_ connection: TunnelConnection) {
        self.state.withLock { $0.groups[connection.group, default: []].append(connection) }
    }

    func remove(_ connection: TunnelConnection) {
        self.state.withLock { state in
            state.groups[connection.group]?.removeAll { $0 === connection }
            if state.groups[connection.group]?.isEmpty == true { state.groups[connection.group] = nil }
        }
    }

    /// The connections of a group (for pushing configuration).
    public func connections(group: String) -> [TunnelConnection] {
        self.state.withLock { $0.groups[group] ?? [] }
    }

    /// Every connection, for status and shutdown.
    public var all: [TunnelConnection] { self.state.withLock { Array($0.groups.values.joined()) } }

    /// Picks the least-loaded usable connection of `group` that has applied at least `generation`,
    /// skipping `excluding` (connections that already failed this request). Ties rotate.
    public func pick(group: String, generation: UInt64, excluding: [UInt64] = []) -> TunnelConnection? {
        self.state.withLock { state in
            guard let candidates = state.groups[group], !candidates.isEmpty else { return nil }
            state.cursor &+= 1
            let start = state.cursor % candidates.count
            var best: TunnelConnection?
            for offset in 0..<candidates.count {
                let connection = candidates[(start + offset) % candidates.count]
                guard !connection.draining, connection.appliedGeneration >= generation, !excluding.contains(connection.id) else { continue }
                if best == nil || connection.activeRequests < best!.activeRequests { best = connection }
            }
            return best
        }
    }
}
