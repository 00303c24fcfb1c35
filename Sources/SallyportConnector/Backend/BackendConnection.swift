import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOPosix
import NIOSSL
import SallyportConfig
import Synchronization
import SallyportHTTP

/// One HTTP/1.1 connection to a backend.
///
/// Owned by exactly one exchange at a time (``BackendPool/withConnection(_:exchange:)`` lends it and takes it
/// back), so its single inbound iterator is never used by two tasks at once. That iterator is why the class is
/// `@unchecked Sendable`: the exchange's response pump reads it from a child task, and an async iterator can
/// neither be shared nor held in a lock across an `await`.
final class BackendConnection: @unchecked Sendable {
    typealias Iterator = NIOAsyncChannelInboundStream<HTTPResponsePart>.AsyncIterator
    typealias Writer = NIOAsyncChannelOutboundWriter<HTTPRequestPart>

    /// Where it is pooled; a binding, once set, stays.
    var key: BackendKey
    let channel: any Channel
    let writer: Writer
    var iterator: Iterator
    /// Shared with the handlers that bound its silence (``BackendConnectionGuard``).
    let signals: BackendConnectionSignals

    private init(
        key: BackendKey, channel: any Channel, inbound: NIOAsyncChannelInboundStream<HTTPResponsePart>, writer: Writer, signals: BackendConnectionSignals
    ) {
        self.key = key
        self.channel = channel
        self.iterator = inbound.makeAsyncIterator()
        self.writer = writer
        self.signals = signals
    }

    /// Before an exchange's request head is written: the longest silence while it streams (`timeouts.idle`).
    func beginExchange(idleTimeout: Duration) {
        self.signals.exchangeTimeout.store(TimeAmount(idleTimeout).nanoseconds, ordering: .relaxed)
    }

    /// Whether the connection was closed because it stayed silent too long.
    var closedForSilence: Bool { self.signals.closedForSilence.load(ordering: .relaxed) }

    var isUsable: Bool { self.channel.isActive }

    func close() { self.channel.close(promise: nil) }

    /// Connects (TCP, then TLS for https) within `timeout`. `idleTimeout`: how long it may stay idle in the pool.
    static func connect(
        key: BackendKey,
        tls: NIOSSLContext?,
        serverName: String?,
        timeout: Duration,
        idleTimeout: Duration,
        group: any EventLoopGroup
    ) async throws -> BackendConnection {
        let signals = BackendConnectionSignals(exchangeTimeout: idleTimeout)
        let asyncChannel = try await ClientBootstrap(group: group)
            .connectTimeout(TimeAmount(timeout))
            .connect(host: key.host, port: key.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls {
                        let name = serverName.flatMap { Self.isIPAddress($0) ? nil : $0 }
                        try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: name))
                    }
                    // Silence in both directions: a long upload the backend reads without answering is not idle.
                    let silence = BackendSilenceHandler(signals: signals)
                    try sync.addHandler(silence)
                    try sync.addHandler(FlushCoalescer())
                    try sync.addHTTPClientHandlers(leftOverBytesStrategy: .forwardBytes)
                    try sync.addHandler(HTTP1ToHTTPClientCodec())
                    try sync.addHandler(BackendConnectionGuard(silence: silence, pooledTimeout: idleTimeout, signals: signals))
                    return try NIOAsyncChannel<HTTPResponsePart, HTTPRequestPart>(wrappingChannelSynchronously: channel)
                }
            }
        // Keep the channel's scoped owner alive for as long as the connection lives; it closes the channel
        // at the end, whatever happens to the pool.
        return try await withCheckedThrowingContinuation { continuation in
            Task {
                do {
                    try await asyncChannel.executeThenClose { inbound, outbound in
                        continuation.resume(
                            returning: BackendConnection(key: key, channel: asyncChannel.channel, inbound: inbound, writer: outbound, signals: signals)
                        )
                        try await asyncChannel.channel.closeFuture.get()
                    }
                } catch {}
            }
        }
    }

    /// After a 101 from the backend: raw bytes from here on.
    func switchToRawBytes() async throws {
        try await self.channel.eventLoop.submit { [channel] in
            try RawBytes.switchToRawBytes(channel.pipeline.syncOperations, side: .client)
        }.get()
    }

    static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }
}

/// Which connections may be shared: same scheme, host, port and TLS settings (compared by content).
struct BackendKey: Hashable, Sendable, CustomStringConvertible {
    var scheme: String
    var host: String
    var port: Int
    var tls: BackendTLS?
    /// Set when the connection is bound to one user (connection-based authentication); nil: shared.
    var affinity: String? = nil

    var description: String { "\(self.scheme)://\(self.host):\(self.port)" }
}
