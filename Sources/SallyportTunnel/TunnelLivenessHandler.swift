public import NIOCore
import NIOHTTP2
public import SallyportConfig

/// Watches one tunnel connection (see ``TunnelLiveness``). It goes first in the pipeline, before TLS, so that
/// any bytes count and closing a dead connection skips the TLS shutdown. Pings start with ``start()``, once
/// HTTP/2 is in the pipeline.
public final class TunnelLivenessHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    /// A change of state, on the event loop: `.suspect` when the peer went quiet, `.alive` when it spoke again,
    /// `.dead` just before the connection is closed (with how long it was silent).
    public typealias Observer = @Sendable (TunnelLiveness.Verdict, Duration) -> Void

    private let liveness: TunnelLiveness
    private let observer: Observer
    private var context: ChannelHandlerContext?
    private var lastRead = NIODeadline.now()
    private var lastPing = NIODeadline.distantPast
    private var verdict = TunnelLiveness.Verdict.alive
    private var timer: RepeatedTask?
    private var pings: UInt64 = 0

    public init(_ liveness: TunnelLiveness, observer: @escaping Observer) {
        self.liveness = liveness
        self.observer = observer
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.lastRead = .now()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
        self.context = nil
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.lastRead = .now()
        if self.verdict == .suspect {
            self.verdict = .alive
            self.observer(.alive, .zero)
        }
        context.fireChannelRead(data)
    }

    /// Starts pinging and watching; call on the event loop once the HTTP/2 handler is in the pipeline.
    public func start() {
        guard let context = self.context, self.timer == nil else { return }
        self.lastRead = .now()
        // The first PING one interval from now: an HTTP/2 server sends nothing before its peer's preface.
        self.lastPing = .now()
        // Ticks finer than the interval, so that suspicion and death are noticed within a second.
        let tick = TimeAmount(min(self.liveness.interval, .seconds(1)))
        let loop = context.eventLoop
        // Cancelled when the channel goes inactive or the handler is removed, which ends the cycle.
        let handler = NIOLoopBound(self, eventLoop: loop)
        self.timer = loop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { _ in
            handler.value.tick()
        }
    }

    private func tick() {
        guard let context = self.context, context.channel.isActive else { return }
        let now = NIODeadline.now()
        let silence = Duration(now - self.lastRead)
        switch self.liveness.verdict(silence: silence) {
        case .dead:
            self.timer?.cancel()
            self.timer = nil
            self.verdict = .dead
            self.observer(.dead, silence)
            // Toward the socket, past TLS: a silent peer would never answer a close_notify.
            context.close(promise: nil)
            return
        case .suspect where self.verdict == .alive:
            self.verdict = .suspect
            self.observer(.suspect, silence)
        case .suspect, .alive:
            break
        }
        if Duration(now - self.lastPing) >= self.liveness.interval {
            self.lastPing = now
            self.pings &+= 1
            let ping = HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(withInteger: self.pings), ack: false))
            context.channel.writeAndFlush(ping, promise: nil)
        }
    }
}
