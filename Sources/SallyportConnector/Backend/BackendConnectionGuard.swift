import HTTPTypes
import NIOCore
import NIOHTTPTypes
import Synchronization

/// Where a backend connection is between and within exchanges, as the bytes on it say, and what follows.
///
/// Two rules a hostile or broken backend must not get round:
/// - **A response ends where HTTP says it ends.** Anything the backend sends between exchanges (bytes past a
///   `Content-Length`, a body on a 204, an unasked-for response) spoils the connection: it is closed, never
///   lent again, so the next user's request is not written behind the leftovers (where the backend would
///   process it and its answer would be lost).
/// - **Silence is bounded in every phase**: the app's `timeouts.idle` while the request or the response
///   streams; none while the backend thinks about its answer (the exchange's response timeout governs
///   that); the pool's idle timeout between exchanges.
struct BackendConnectionState: Equatable {
    enum Phase: Equatable {
        /// Pooled, or lent but not yet written to.
        case between
        /// An exchange: what has been seen of it.
        case exchange(requestEnded: Bool, headReceived: Bool, responseEnded: Bool)
        /// A 101 was received: raw bytes both ways until the connection closes.
        case upgraded
        /// The backend sent something outside an exchange: the connection is being closed.
        case spoiled
    }

    /// How long silence may last now; nil: no limit (the response timeout watches that phase).
    enum Silence: Equatable {
        case exchange
        case awaitingHead
        case pooled
    }

    enum Action: Equatable {
        case forward
        /// Drop what came and close the connection.
        case close
    }

    private(set) var phase = Phase.between

    var silence: Silence {
        switch self.phase {
        case .between, .spoiled: .pooled
        case .upgraded: .exchange
        case .exchange(let requestEnded, let headReceived, _): requestEnded && !headReceived ? .awaitingHead : .exchange
        }
    }

    mutating func requestHeadWritten() {
        switch self.phase {
        case .between, .exchange: self.phase = .exchange(requestEnded: false, headReceived: false, responseEnded: false)
        case .upgraded, .spoiled: break
        }
    }

    mutating func requestEndWritten() {
        guard case .exchange(_, let head, let ended) = self.phase else { return }
        self.phase = ended ? .between : .exchange(requestEnded: true, headReceived: head, responseEnded: false)
    }

    mutating func received(_ part: HTTPResponsePart) -> Action {
        switch self.phase {
        case .upgraded:
            return .forward
        case .spoiled:
            return .close
        case .between:
            self.phase = .spoiled
            return .close
        case .exchange(let requestEnded, let head, let ended):
            if ended {
                // The response ended while the request still streams (an early answer): nothing more may come.
                self.phase = .spoiled
                return .close
            }
            switch part {
            case .head(let response) where response.status == .switchingProtocols:
                self.phase = .upgraded
            case .head(let response) where response.status.kind == .informational:
                break
            case .head:
                self.phase = .exchange(requestEnded: requestEnded, headReceived: true, responseEnded: false)
            case .body:
                if !head {
                    self.phase = .spoiled
                    return .close
                }
            case .end:
                self.phase = requestEnded ? .between : .exchange(requestEnded: false, headReceived: true, responseEnded: true)
            }
            return .forward
        }
    }

    /// A decoding error (bytes that are no HTTP response, or one nobody asked for).
    mutating func failed() -> Action {
        switch self.phase {
        case .between, .spoiled:
            self.phase = .spoiled
            return .close
        case .exchange(_, _, let ended) where ended:
            self.phase = .spoiled
            return .close
        case .exchange, .upgraded:
            return .forward
        }
    }
}

/// What the task that lends a backend connection and the handlers on its event loop share.
final class BackendConnectionSignals: Sendable {
    /// The app's `timeouts.idle` for the exchange about to start, in nanoseconds: set by the lending task
    /// before it writes the request head, read on the loop when the head goes out.
    let exchangeTimeout: Atomic<Int64>
    /// Set when the connection was closed for silence (read by the exchange once its response stopped).
    let closedForSilence = Atomic(false)

    init(exchangeTimeout: Duration) {
        self.exchangeTimeout = Atomic(TimeAmount(exchangeTimeout).nanoseconds)
    }
}

/// Drives ``BackendConnectionState`` on a backend connection, above the HTTP codec: closes a spoiled
/// connection, and tells the ``BackendSilenceHandler`` below which limit applies.
final class BackendConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPResponsePart
    typealias InboundOut = HTTPResponsePart
    typealias OutboundIn = HTTPRequestPart
    typealias OutboundOut = HTTPRequestPart

    private var state = BackendConnectionState()
    private let silence: BackendSilenceHandler
    private let pooledTimeout: TimeAmount
    private let signals: BackendConnectionSignals

    init(silence: BackendSilenceHandler, pooledTimeout: Duration, signals: BackendConnectionSignals) {
        self.silence = silence
        self.pooledTimeout = TimeAmount(pooledTimeout)
        self.signals = signals
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.apply()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.state.received(self.unwrapInboundIn(data)) {
        case .forward:
            self.apply()
            context.fireChannelRead(data)
        case .close:
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch self.state.failed() {
        case .forward: context.fireErrorCaught(error)
        case .close: context.close(promise: nil)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch self.unwrapOutboundIn(data) {
        case .head: self.state.requestHeadWritten()
        case .body: break
        case .end: self.state.requestEndWritten()
        }
        self.apply()
        context.write(data, promise: promise)
    }

    private func apply() {
        switch self.state.silence {
        case .exchange: self.silence.limit = .nanoseconds(self.signals.exchangeTimeout.load(ordering: .relaxed))
        case .awaitingHead: self.silence.limit = nil
        case .pooled: self.silence.limit = self.pooledTimeout
        }
    }
}

/// Closes a backend connection that stays silent (nothing read, nothing written) for longer than `limit`;
/// byte level, below the HTTP codec. Unlike NIO's `IdleStateHandler`, the limit changes with the phase.
final class BackendSilenceHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    typealias InboundOut = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    /// Nil: no limit now.
    var limit: TimeAmount? {
        didSet { if self.limit != oldValue { self.schedule() } }
    }
    private let signals: BackendConnectionSignals
    private var lastActivity = NIODeadline.now()
    private var timer: Scheduled<Void>?
    private var context: ChannelHandlerContext?

    init(signals: BackendConnectionSignals) {
        self.signals = signals
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.lastActivity = context.eventLoop.now
        self.schedule()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        self.lastActivity = context.eventLoop.now
        self.schedule()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.lastActivity = context.eventLoop.now
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        self.lastActivity = context.eventLoop.now
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.timer?.cancel()
        context.fireChannelInactive()
    }

    private func schedule() {
        self.timer?.cancel()
        self.timer = nil
        guard let limit = self.limit, let context = self.context, context.channel.isActive else { return }
        // From the last activity, not from now: a phase change is no activity.
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleTask(deadline: self.lastActivity + limit) { bound.value.fire() }
    }

    private func fire() {
        guard let limit = self.limit, let context = self.context else { return }
        if context.eventLoop.now - self.lastActivity >= limit {
            self.signals.closedForSilence.store(true, ordering: .relaxed)
            context.close(promise: nil)
        } else {
            self.schedule()
        }
    }
}

@available(*, unavailable)
extension BackendConnectionGuard: Sendable {}

@available(*, unavailable)
extension BackendSilenceHandler: Sendable {}
