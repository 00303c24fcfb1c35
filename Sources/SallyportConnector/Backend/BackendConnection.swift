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

/// What happens on a backend connection, as the exchange that borrowed it hears it.
enum BackendEvent: Sendable {
    case part(HTTPResponsePart)
    /// The end of a batch of reads: time to flush what was written into the tunnel.
    case readComplete
    /// The connection can take more of the request (or cannot for now).
    case writable(Bool)
    /// An error (a reset, bytes that are no HTTP response); the first one only.
    case failed(any Error)
    case closed
}

/// One HTTP/1.1 connection to a backend, lent to one exchange at a time (``BackendPool``): the exchange hears
/// its events through the ``BackendLink`` that ends its pipeline, and writes request parts to its channel.
///
/// `@unchecked Sendable` for ``key``, which only the exchange holding the connection changes (when it binds
/// the connection to a user on giving it back).
final class BackendConnection: @unchecked Sendable {
    /// Where it is pooled; a binding, once set, stays.
    var key: BackendKey
    let channel: any Channel
    let link: NIOLoopBound<BackendLink>
    /// Shared with the handlers that bound its silence (``BackendConnectionGuard``).
    let signals: BackendConnectionSignals

    private init(key: BackendKey, channel: any Channel, link: NIOLoopBound<BackendLink>, signals: BackendConnectionSignals) {
        self.key = key
        self.channel = channel
        self.link = link
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

    func write(_ part: HTTPRequestPart) { self.channel.write(part, promise: nil) }

    func flush() { self.channel.flush() }

    /// Runs `body` with the link on the connection's event loop.
    func withLink(_ body: @escaping @Sendable (BackendLink) -> Void) {
        let link = self.link
        self.channel.eventLoop.executeNowOrLater { body(link.value) }
    }

    /// Connects (TCP, then TLS for https) on `loop` within `timeout`. `idleTimeout`: how long it may stay idle in
    /// the pool.
    static func connect(
        key: BackendKey,
        tls: NIOSSLContext?,
        serverName: String?,
        timeout: Duration,
        idleTimeout: Duration,
        on loop: any EventLoop
    ) -> EventLoopFuture<BackendConnection> {
        let signals = BackendConnectionSignals(exchangeTimeout: idleTimeout)
        return ClientBootstrap(group: loop)
            .connectTimeout(TimeAmount(timeout))
            .channelInitializer { channel in
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
                    try sync.addHandler(BackendLink())
                }
            }
            .connect(host: key.host, port: key.port)
            .flatMapThrowing { channel in
                let link = try channel.pipeline.syncOperations.handler(type: BackendLink.self)
                return BackendConnection(key: key, channel: channel, link: NIOLoopBound(link, eventLoop: channel.eventLoop), signals: signals)
            }
    }

    /// After a 101 from the backend: raw bytes from here on. Not at once: the decoder that just passed the 101 on
    /// passes its end next, and only then may it go (with the bytes it holds after the head).
    func switchToRawBytes() {
        let channel = self.channel
        channel.eventLoop.execute {
            do {
                try RawBytes.switchToRawBytes(channel.pipeline.syncOperations, side: .client)
            } catch {
                channel.close(promise: nil)
            }
        }
    }

    static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }
}

/// The end of a backend connection's pipeline: passes what the backend sends to the exchange that borrowed the
/// connection (nothing while it is pooled: ``BackendConnectionGuard`` closes a connection that speaks out of
/// turn), and reads only while that exchange can take more.
final class BackendLink: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPResponsePart
    typealias OutboundIn = HTTPRequestPart
    typealias OutboundOut = HTTPRequestPart

    private var context: ChannelHandlerContext?
    private var sink: (@Sendable (BackendEvent) -> Void)?
    private var readable = true
    private var reads = ReadGate()
    private var failed = false
    private var inactive = false

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// Lends the connection: its events go to `sink` until ``detach()``.
    func attach(_ sink: @escaping @Sendable (BackendEvent) -> Void) {
        self.sink = sink
        self.failed = false
        self.setReadable(true)
        // Closed between the pool's check and now: the borrower hears it, as it would have.
        if self.inactive || self.context?.channel.isActive != true { sink(.closed) }
    }

    /// Back in the pool: reads go on, so that a backend that closes is noticed.
    func detach() {
        self.sink = nil
        self.setReadable(true)
    }

    /// Whether the borrower can take more of the response now.
    func setReadable(_ readable: Bool) {
        self.readable = readable
        if self.reads.reopen(open: readable) { self.context?.read() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.sink?(.part(self.unwrapInboundIn(data)))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.sink?(.readComplete)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.sink?(.writable(context.channel.isWritable))
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !self.failed else { return }
        self.failed = true
        self.sink?(.failed(error))
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.inactive = true
        self.sink?(.closed)
        context.fireChannelInactive()
    }

    func read(context: ChannelHandlerContext) {
        if self.reads.read(open: self.readable) { context.read() }
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
