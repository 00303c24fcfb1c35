import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import SallyportConfig
import SallyportHTTP

/// The public HTTP/1.1 connection pipeline and its protocol switch.
enum EdgePipeline {
    typealias Connection = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

    /// TLS is already in place; adds HTTP/1.1 with the edge's limits and timeouts.
    static func configureHTTP1(_ channel: any Channel, limits: EdgeLimits) throws -> Connection {
        let sync = channel.pipeline.syncOperations
        let timeouts = EdgeTimeoutHandler(headerReadTimeout: TimeAmount(limits.headerReadTimeout), idleTimeout: TimeAmount(limits.idleTimeout))
        try sync.addHandler(timeouts.byteObserver)
        var decoderLimits = NIOHTTPDecoderLimitConfiguration()
        decoderLimits.maxHeaderListSize = limits.maxHeaderBytes
        decoderLimits.maxHeaderFieldSize = limits.maxHeaderBytes
        decoderLimits.maxHeaderFieldCount = limits.maxHeaderCount
        // An (empty) upgrade configuration makes the decoder hand over bytes that follow an upgrade request.
        try sync.configureHTTPServerPipeline(
            withPipeliningAssistance: false,
            withServerUpgrade: (upgraders: [], completionHandler: { _ in }),
            withErrorHandling: true,
            withOutboundHeaderValidation: true,
            withEncoderConfiguration: .init(),
            withDecoderLimitConfiguration: decoderLimits
        )
        try sync.addHandler(HTTP1ToHTTPServerCodec(secure: true, splitCookie: false))
        try sync.addHandler(timeouts)
        try sync.addHandler(EndWriteTracker<HTTPResponsePart>())
        return try Connection(wrappingChannelSynchronously: channel)
    }

    /// After a 101: removes the HTTP/1.1 codec so the connection carries raw bytes, keeping the async
    /// channel's element types through ``RawBytesServerAdapter``.
    static func switchToRawBytes(_ sync: ChannelPipeline.SynchronousOperations) throws {
        let codec = try sync.handler(type: HTTP1ToHTTPServerCodec.self)
        try sync.addHandler(RawBytesServerAdapter(), position: .after(codec))
        _ = sync.removeHandler(codec)
        if let handler = try? sync.handler(type: HTTPServerProtocolErrorHandler.self) { _ = sync.removeHandler(handler) }
        if let handler = try? sync.handler(type: NIOHTTPResponseHeadersValidator.self) { _ = sync.removeHandler(handler) }
        _ = sync.removeHandler(try sync.handler(type: HTTPResponseEncoder.self))
        // Last: bytes the decoder buffered after the upgrade request flow on to the adapter.
        _ = sync.removeHandler(try sync.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self))
    }
}


/// Enforces the edge's timeouts on an HTTP/1.1 connection and handles graceful quiescing.
///
/// - Idle: a connection with no request in progress and no bytes arriving is closed after `idleTimeout`.
/// - Header read: once the first byte of a request arrives, its whole head must arrive within
///   `headerReadTimeout` (slow-header attacks).
/// - Quiesce (`ChannelShouldQuiesceEvent`): an idle connection closes now; a busy one after its response.
final class EdgeTimeoutHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    enum State {
        case idle
        case readingHead
        case inRequest
        case upgraded
    }

    private let headerReadTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private var state = State.idle
    private var timer: Scheduled<Void>?
    private var quiescing = false
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
        if context.channel.isActive { self.arm(self.idleTimeout) }
    }

    func channelActive(context: ChannelHandlerContext) {
        self.arm(self.idleTimeout)
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
        if case .idle = self.state {
            self.state = .readingHead
            self.arm(self.headerReadTimeout)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = self.unwrapInboundIn(data) {
            switch self.state {
            case .idle, .readingHead:
                self.state = .inRequest
                self.timer?.cancel()
            case .inRequest, .upgraded:
                break
            }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch self.unwrapOutboundIn(data) {
        case .head(var response):
            if response.status == .switchingProtocols {
                self.state = .upgraded
                self.timer?.cancel()
            } else if self.quiescing, response.status.kind != .informational {
                response.headerFields[.connection] = "close"
                context.write(self.wrapOutboundOut(.head(response)), promise: promise)
                return
            }
            context.write(data, promise: promise)
        case .end:
            if case .inRequest = self.state {
                self.state = .idle
                if self.quiescing {
                    let written = promise ?? context.eventLoop.makePromise()
                    context.writeAndFlush(data, promise: written)
                    let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
                    written.futureResult.whenComplete { _ in bound.value.close(promise: nil) }
                    return
                }
                self.arm(self.idleTimeout)
            }
            context.write(data, promise: promise)
        case .body:
            context.write(data, promise: promise)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            self.quiescing = true
            switch self.state {
            case .idle, .readingHead:
                context.close(promise: nil)
            case .inRequest, .upgraded:
                break
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func arm(_ timeout: TimeAmount) {
        self.timer?.cancel()
        guard let context = self.context else { return }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleTask(in: timeout) {
            bound.value.close(promise: nil)
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
