public import NIOCore
public import NIOHTTP2

/// Closes a tunnel connection whose peer has declared it broken.
///
/// When NIOHTTP2 meets a connection error (a protocol violation, or one of its abuse limits) it sends a GOAWAY
/// with an error code and reports the error, but leaves the connection open: the streams already open may
/// finish, and no new one is ever answered. A tunnel left like that looks alive to liveness (its pings are
/// answered) while every request sent on it waits for a response head that never comes. So either side closes
/// the connection as soon as the other sends a GOAWAY with an error code: the connector dials again and the
/// relay's requests go to the connections that work. A GOAWAY with `NO_ERROR` is a drain and is left alone.
///
/// Goes after the HTTP/2 handler, which passes every frame of stream 0 on.
public final class TunnelGoAwayHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTP2Frame
    public typealias InboundOut = HTTP2Frame

    /// Hears the peer's error code before the connection closes.
    private let observer: @Sendable (HTTP2ErrorCode) -> Void

    public init(observer: @escaping @Sendable (HTTP2ErrorCode) -> Void) {
        self.observer = observer
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        if case .goAway(_, let code, _) = frame.payload, code != .noError {
            self.observer(code)
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
    }
}
