import NIOCore
import NIOHTTP2

/// How many streams a client may reset while the relay is still answering them: the rapid-reset attack
/// (CVE-2023-44487) makes the server start work and cancels it at once, over and over.
///
/// NIOHTTP2's own limit counts every RST_STREAM frame, including those for streams that are already closed,
/// which cost nothing: curl sends one for every stream it has received whole when the response had no
/// Content-Length, and busy connections were closed with GOAWAY ENHANCE_YOUR_CALM, losing the requests in
/// flight. This counts only resets that reach a stream still in progress.
struct ResetRateLimiter: Sendable {
    let maximum: Int
    let window: Duration
    private var times: [ContinuousClock.Instant] = []

    init(maximum: Int = 200, window: Duration = .seconds(10)) {
        self.maximum = maximum
        self.window = window
    }

    /// Records one reset; true when more than `maximum` fell within `window`.
    mutating func record(at now: ContinuousClock.Instant) -> Bool {
        self.times.removeAll { now - $0 >= self.window }
        self.times.append(now)
        return self.times.count > self.maximum
    }
}

/// One HTTP/2 connection's reset budget; its streams report resets, and the connection closes once it is
/// spent. Used only on the connection's event loop.
final class ConnectionResetBudget: @unchecked Sendable {
    private var limiter = ResetRateLimiter()
    private let connection: any Channel
    private var spent = false
    /// The highest stream the client opened: the GOAWAY names it, so HTTP/2 refuses every later one.
    private var lastStream = HTTP2StreamID(0)

    init(connection: any Channel) {
        self.connection = connection
    }

    /// How long a spent connection is read (and what arrives dropped by HTTP/2's GOAWAY) before it closes.
    static let linger: TimeAmount = .seconds(1)

    /// The client opened `stream`.
    func opened(_ stream: HTTP2StreamID) {
        if stream > self.lastStream { self.lastStream = stream }
    }

    /// The client reset a stream in progress.
    func streamReset() {
        self.connection.eventLoop.preconditionInEventLoop()
        guard !self.spent, self.limiter.record(at: .now) else { return }
        self.spent = true
        let frame = HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: self.lastStream, errorCode: .enhanceYourCalm, opaqueData: nil))
        let connection = self.connection
        connection.writeAndFlush(frame).whenComplete { _ in
            // Closing at once, with the client's frames still unread, makes the kernel reset the connection, and
            // a reset can destroy the GOAWAY before the client reads it. Half-close instead: GOAWAY, TLS
            // close_notify and FIN go out in order; what the client still sends is read for a moment; then close.
            connection.close(mode: .output, promise: nil)
            connection.eventLoop.scheduleTask(in: Self.linger) { connection.close(promise: nil) }
        }
    }
}

/// On each HTTP/2 stream: tells the connection's budget when the client resets the stream before it ended.
final class StreamResetWatcher: ChannelInboundHandler {
    typealias InboundIn = NIOAny

    private let budget: ConnectionResetBudget

    /// `stream`: the stream's id (the multiplexer's stream initializer knows it), for the GOAWAY.
    init(budget: ConnectionResetBudget, stream: HTTP2StreamID? = nil) {
        self.budget = budget
        if let stream { budget.opened(stream) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is NIOHTTP2Errors.StreamClosed { self.budget.streamReset() }
        context.fireErrorCaught(error)
    }
}

@available(*, unavailable)
extension StreamResetWatcher: Sendable {}
