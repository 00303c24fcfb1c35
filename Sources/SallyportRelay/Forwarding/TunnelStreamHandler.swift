import HTTPTypes
import NIOCore
import NIOHTTPTypes
import SallyportHTTP

/// What happens on a request's tunnel stream, as its ``ExchangeHandler`` hears it.
enum TunnelStreamEvent: Sendable {
    case part(HTTPResponsePart)
    /// The end of a batch of reads: time to flush what was written to the user.
    case readComplete
    /// The stream can take more of the request (or cannot for now).
    case writable(Bool)
    /// The stream closed; what its error, if any, means for the request.
    case closed(Failover.Failure)
}

/// The relay's end of one tunnel stream, glued to the user's channel in the manner of swift-nio-examples'
/// `GlueHandler`: it passes the connector's response parts to the request's ``ExchangeHandler`` (on that handler's
/// event loop), and reads from the stream only while the user's connection can take more, so HTTP/2 flow control
/// holds the connector back when the user reads slowly.
final class TunnelStreamHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPResponsePart
    typealias OutboundIn = HTTPRequestPart
    typealias OutboundOut = HTTPRequestPart

    private let sink: ExchangeHandler.Sink
    private var context: ChannelHandlerContext?
    private var userWritable = true
    private var reads = ReadGate()
    private var error: (any Error)?

    init(sink: ExchangeHandler.Sink) {
        self.sink = sink
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.sink.deliver(.part(self.unwrapInboundIn(data)))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.sink.deliver(.readComplete)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.sink.deliver(.writable(context.channel.isWritable))
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if self.error == nil { self.error = error }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.sink.deliver(.closed(self.error.map(Failover.failure(of:)) ?? .lost))
        context.fireChannelInactive()
    }

    func read(context: ChannelHandlerContext) {
        if self.reads.read(open: self.userWritable) { context.read() }
    }

    /// The user's channel can take more of the response (or cannot for now).
    func userWritabilityChanged(_ writable: Bool) {
        self.userWritable = writable
        if self.reads.reopen(open: writable) { self.context?.read() }
    }
}

/// The request's hold on its current tunnel stream, usable from the user's event loop.
struct TunnelStreamLink: Sendable {
    let connection: TunnelConnection
    let channel: any Channel
    let handler: NIOLoopBound<TunnelStreamHandler>

    func write(_ part: HTTPRequestPart) {
        self.channel.write(part, promise: nil)
    }

    func flush() {
        self.channel.flush()
    }

    /// Resets the stream (the exchange ended early, or failed).
    func close() {
        self.channel.close(promise: nil)
    }

    var isWritable: Bool { self.channel.isWritable }

    func userWritabilityChanged(_ writable: Bool) {
        let handler = self.handler
        self.channel.eventLoop.executeNowOrLater { handler.value.userWritabilityChanged(writable) }
    }
}
