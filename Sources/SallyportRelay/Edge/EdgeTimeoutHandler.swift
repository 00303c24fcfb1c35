import HTTPTypes
import NIOCore
import NIOHTTPTypes
import NIOTLS

/// Carries out ``EdgeConnectionState`` on an HTTP/1.1 connection: its timers, and closing when it says so.
final class EdgeTimeoutHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let headerReadTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private var state = EdgeConnectionState()
    private var timer: Scheduled<Void>?
    private var context: ChannelHandlerContext?
    let byteObserver: ByteObserver

    init(headerReadTimeout: TimeAmount, idleTimeout: TimeAmount) {
        self.headerReadTimeout = headerReadTimeout
        self.idleTimeout = idleTimeout
        self.byteObserver = ByteObserver()
        self.byteObserver.owner = self
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { self.perform(self.state.started(), context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        self.perform(self.state.started(), context: context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.timer?.cancel()
        context.fireChannelInactive()
    }

    /// Bytes arrived before the decoder.
    fileprivate func bytesArrived() {
        guard let context else { return }
        self.perform(self.state.bytesArrived(), context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = self.unwrapInboundIn(data) {
            self.perform(self.state.requestHeadArrived(), context: context)
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch self.unwrapOutboundIn(data) {
        case .head(var response):
            switch self.state.responseHead(response.status) {
            case .write:
                context.write(data, promise: promise)
            case .writeAndCancelTimer:
                self.perform(.cancelTimer, context: context)
                context.write(data, promise: promise)
            case .writeWithConnectionClose:
                response.headerFields[.connection] = "close"
                context.write(self.wrapOutboundOut(.head(response)), promise: promise)
            }
        case .end:
            switch self.state.responseEnd() {
            case .write:
                context.write(data, promise: promise)
            case .writeThenArm(let timer):
                self.perform(.arm(timer), context: context)
                context.write(data, promise: promise)
            case .writeThenClose:
                let written = promise ?? context.eventLoop.makePromise()
                context.writeAndFlush(data, promise: written)
                let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
                written.futureResult.whenComplete { _ in bound.value.close(promise: nil) }
            }
        case .body:
            context.write(data, promise: promise)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            self.perform(self.state.quiesce(), context: context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func perform(_ action: EdgeConnectionState.Action, context: ChannelHandlerContext) {
        switch action {
        case .none:
            break
        case .cancelTimer:
            self.timer?.cancel()
            self.timer = nil
        case .close:
            self.timer?.cancel()
            context.close(promise: nil)
        case .arm(let kind):
            self.timer?.cancel()
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            self.timer = context.eventLoop.scheduleTask(in: kind == .idle ? self.idleTimeout : self.headerReadTimeout) {
                bound.value.close(promise: nil)
            }
        }
    }

    /// Sits in front of the HTTP decoder and reports the first byte of each request.
    final class ByteObserver: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        weak var owner: EdgeTimeoutHandler?

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            self.owner?.bytesArrived()
            context.fireChannelRead(data)
        }
    }
}

@available(*, unavailable)
extension EdgeTimeoutHandler: Sendable {}

/// Closes a connection whose TLS handshake has not completed within `timeout` (a silent TCP client would
/// otherwise hold a descriptor for good); removes itself once the handshake is done.
final class HandshakeTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let timeout: TimeAmount
    private var timer: Scheduled<Void>?

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { self.arm(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        self.arm(context: context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        context.fireUserInboundEventTriggered(event)
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls {
            // After passing the event on: the protocol negotiation behind this handler needs it.
            self.timer?.cancel()
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    private func arm(context: ChannelHandlerContext) {
        guard self.timer == nil else { return }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleTask(in: self.timeout) { bound.value.close(promise: nil) }
    }
}

@available(*, unavailable)
extension HandshakeTimeoutHandler: Sendable {}
