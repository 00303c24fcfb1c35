import HTTPTypes
import NIOCore
import NIOHTTPTypes
import SallyportConfig
import SallyportHTTP

/// How long the relay may wait for more of a request body, as a value: time counts only while the relay is
/// ready to read (it has asked for more), so a backend that reads slowly never makes its client look slow.
///
/// Two rules, as Kestrel and nginx have them: no wait for more bytes may last longer than `timeout`, and after a
/// grace period the body must average `minRate` bytes per second of waiting.
struct BodyReadClock {
    let timeout: Duration
    /// Bytes per second; 0: no rate rule.
    let minRate: Int
    static let grace: Duration = .seconds(5)

    /// A request body is expected: between a head and its end.
    private(set) var expectingBody = false
    private var bytes = 0
    /// Time spent waiting for the client in earlier waits of this body.
    private var waited: Duration = .zero
    private var waitingSince: ContinuousClock.Instant?

    init(timeout: Duration, minRate: Int) {
        self.timeout = timeout
        self.minRate = minRate
    }

    /// A request head arrived; `bodyFollows` false for requests whose body is not HTTP (a protocol switch).
    mutating func headArrived(bodyFollows: Bool) {
        self.expectingBody = bodyFollows
        self.bytes = 0
        self.waited = .zero
        self.waitingSince = nil
    }

    /// The relay asks for more bytes. Returns how long it may wait from `now`, or nil when no body is pending.
    mutating func readRequested(at now: ContinuousClock.Instant) -> Duration? {
        guard self.expectingBody else { return nil }
        if self.waitingSince == nil { self.waitingSince = now }
        return self.allowance(at: now)
    }

    /// Body bytes arrived: the current wait is over.
    mutating func bodyArrived(bytes: Int, at now: ContinuousClock.Instant) {
        if let since = self.waitingSince { self.waited += now - since }
        self.waitingSince = nil
        self.bytes += bytes
    }

    /// The request ended, or the connection switched protocols: nothing more to time.
    mutating func ended() {
        self.expectingBody = false
        self.waitingSince = nil
    }

    /// What is left of the current wait at `now` before a rule is broken.
    func allowance(at now: ContinuousClock.Instant) -> Duration {
        let current = self.waitingSince.map { now - $0 } ?? .zero
        var left = self.timeout - current
        if self.minRate > 0 {
            let earned = Self.grace + .nanoseconds(Int64(Double(self.bytes) / Double(self.minRate) * 1e9))
            left = min(left, earned - self.waited - current)
        }
        return max(left, .zero)
    }
}

/// On each public HTTP/1.1 connection and HTTP/2 stream: cuts off a request body that arrives too slowly
/// (``BodyReadClock``) and a response the client does not read (the channel stays unwritable for
/// `sendTimeout`). Closing an HTTP/2 stream channel resets only that stream.
final class RequestFlowGuard: ChannelDuplexHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private var clock: BodyReadClock
    private let sendTimeout: TimeAmount
    private var readTimer: Scheduled<Void>?
    private var sendTimer: Scheduled<Void>?

    init(_ limits: EdgeLimits) {
        self.clock = BodyReadClock(timeout: limits.bodyReadTimeout, minRate: limits.minBodyRate)
        self.sendTimeout = TimeAmount(limits.sendTimeout)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            // A WebSocket handshake's bytes after its head are WebSocket's, once the backend agrees.
            self.clock.headArrived(bodyFollows: !WebSocketHandshake.isValid(head))
        case .body(let buffer):
            self.clock.bodyArrived(bytes: buffer.readableBytes, at: .now)
            self.cancelReadTimer()
        case .end:
            self.clock.ended()
            self.cancelReadTimer()
        }
        context.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        // Between bodies (most reads) this costs nothing: no clock reading, no timer.
        if self.clock.expectingBody, let allowance = self.clock.readRequested(at: .now) {
            self.readTimer?.cancel()
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            self.readTimer = context.eventLoop.scheduleTask(in: TimeAmount(allowance)) { bound.value.close(promise: nil) }
        }
        context.read()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .head(let response) = self.unwrapOutboundIn(data), response.status == .switchingProtocols {
            // From here the bytes are another protocol's: its own idle rules apply, not a body's.
            self.clock.ended()
            self.cancelReadTimer()
        }
        context.write(data, promise: promise)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            self.sendTimer?.cancel()
            self.sendTimer = nil
        } else if self.sendTimer == nil {
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            self.sendTimer = context.eventLoop.scheduleTask(in: self.sendTimeout) { bound.value.close(promise: nil) }
        }
        context.fireChannelWritabilityChanged()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.cancelReadTimer()
        self.sendTimer?.cancel()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.cancelReadTimer()
        self.sendTimer?.cancel()
        context.fireChannelInactive()
    }

    private func cancelReadTimer() {
        self.readTimer?.cancel()
        self.readTimer = nil
    }
}

@available(*, unavailable)
extension RequestFlowGuard: Sendable {}
