public import NIOCore

/// Closes a channel when `IdleStateHandler` reports it idle (dead tunnels, silent backends).
public final class CloseOnIdleHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = NIOAny

    /// Creates the handler; put it after an `IdleStateHandler`.
    public init() {}

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
