import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// After a protocol switch (WebSocket), carries raw bytes through a channel whose async wrapper still speaks
/// `HTTPRequestPart`/`HTTPResponsePart`: inbound bytes become `.body` parts, outbound `.body` parts become bytes.
///
/// This keeps one `NIOAsyncChannel` type for the whole life of an HTTP/1.1 connection that is upgraded.
public final class RawBytesServerAdapter: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = HTTPRequestPart
    public typealias OutboundIn = HTTPResponsePart
    public typealias OutboundOut = ByteBuffer

    public init() {}

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(self.wrapInboundOut(.body(self.unwrapInboundIn(data))))
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch self.unwrapOutboundIn(data) {
        case .body(let buffer):
            context.write(self.wrapOutboundOut(buffer), promise: promise)
        case .end:
            // Nothing to send, but the promise must complete only after the bytes before it are out.
            context.write(self.wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: promise)
        case .head:
            promise?.succeed(())
        }
    }
}

/// The client-side twin of ``RawBytesServerAdapter``, for the connector's upgraded backend connection.
public final class RawBytesClientAdapter: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = HTTPResponsePart
    public typealias OutboundIn = HTTPRequestPart
    public typealias OutboundOut = ByteBuffer

    public init() {}

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(self.wrapInboundOut(.body(self.unwrapInboundIn(data))))
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch self.unwrapOutboundIn(data) {
        case .body(let buffer):
            context.write(self.wrapOutboundOut(buffer), promise: promise)
        case .end:
            // Nothing to send, but the promise must complete only after the bytes before it are out.
            context.write(self.wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: promise)
        case .head:
            promise?.succeed(())
        }
    }
}
