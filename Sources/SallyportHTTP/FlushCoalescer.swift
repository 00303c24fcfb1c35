public import NIOCore

/// Gathers the flushes of one event-loop tick into one.
///
/// The request path writes a message in parts (head, body, end), and every part written through an
/// `NIOAsyncChannel` writer is flushed on its own: below TLS that is a TLS record and a system call per part, on
/// a tunnel one per stream's frame. Placed right above TLS, this handler lets writes through at once but
/// passes one flush on when the event loop has finished its current work, so the parts leave together. Nothing
/// is held past the current tick; a close flushes what is pending first.
public final class FlushCoalescer: ChannelOutboundHandler, RemovableChannelHandler {
    public typealias OutboundIn = NIOAny
    public typealias OutboundOut = NIOAny

    private var pending = false

    public init() {}

    public func flush(context: ChannelHandlerContext) {
        guard !self.pending else { return }
        self.pending = true
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (handler, context) = bound.value
            handler.flushPending(context)
        }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        self.flushPending(context)
        context.close(mode: mode, promise: promise)
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.flushPending(context)
    }

    private func flushPending(_ context: ChannelHandlerContext) {
        guard self.pending else { return }
        self.pending = false
        context.flush()
    }
}
