import HTTPTypes
public import NIOCore
import NIOHTTP1
public import NIOHTTPTypes
import NIOHTTPTypesHTTP1

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

/// The switch of an HTTP/1.1 pipeline to raw bytes after `101 Switching Protocols`, for both sides.
public enum RawBytes {
    /// Which end of the connection the pipeline is.
    public enum Side: Sendable {
        /// The relay's public edge (NIO's server codec; ``RawBytesServerAdapter``).
        case server
        /// The connector's backend connection (NIO's client codec; ``RawBytesClientAdapter``).
        case client
    }

    /// Removes the HTTP/1.1 codec, its validators and error handler, and puts the raw-byte adapter in its
    /// place, keeping the async channel's element types. The decoder goes last, so bytes it buffered after
    /// the upgrade flow on to the adapter. Call on the channel's event loop.
    /// `httpHandlers`: the server pipeline's own handlers of NIOHTTP1 parts (its HTTP error handler, if it is
    /// not NIO's, and any other), removed with the codec.
    public static func switchToRawBytes(
        _ sync: ChannelPipeline.SynchronousOperations, side: Side, httpHandlers: [any RemovableChannelHandler.Type] = []
    ) throws {
        switch side {
        case .server:
            try self.replace(
                codec: HTTP1ToHTTPServerCodec.self, with: RawBytesServerAdapter(), in: sync,
                optional: (httpHandlers.isEmpty ? [HTTPServerProtocolErrorHandler.self] : httpHandlers) + [NIOHTTPResponseHeadersValidator.self],
                encoder: HTTPResponseEncoder.self, decoder: ByteToMessageHandler<HTTPRequestDecoder>.self
            )
        case .client:
            try self.replace(
                codec: HTTP1ToHTTPClientCodec.self, with: RawBytesClientAdapter(), in: sync,
                optional: [NIOHTTPRequestHeadersValidator.self],
                encoder: HTTPRequestEncoder.self, decoder: ByteToMessageHandler<HTTPResponseDecoder>.self
            )
        }
    }

    private static func replace<Codec: RemovableChannelHandler, Encoder: RemovableChannelHandler, Decoder: RemovableChannelHandler>(
        codec: Codec.Type,
        with adapter: some ChannelHandler,
        in sync: ChannelPipeline.SynchronousOperations,
        optional: [any RemovableChannelHandler.Type],
        encoder: Encoder.Type,
        decoder: Decoder.Type
    ) throws {
        let found = try sync.handler(type: codec)
        try sync.addHandler(adapter, position: .after(found))
        _ = sync.removeHandler(found)
        for type in optional { self.removeIfPresent(type, in: sync) }
        _ = sync.removeHandler(try sync.handler(type: encoder))
        _ = sync.removeHandler(try sync.handler(type: decoder))
    }

    private static func removeIfPresent<Handler: RemovableChannelHandler>(_ type: Handler.Type, in sync: ChannelPipeline.SynchronousOperations) {
        if let handler = try? sync.handler(type: type) { _ = sync.removeHandler(handler) }
    }
}
