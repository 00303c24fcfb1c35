import NIOCore
import NIOHTTP2

/// Puts END_STREAM on the last DATA frame of a response instead of sending it as an empty DATA frame of
/// its own, when both are written before the same flush (the relay does that once a Content-Length body is
/// complete).
///
/// Some clients (curl) reset a stream whose announced body has fully arrived before its END_STREAM. Those
/// resets count against NIOHTTP2's rapid-reset and glitch limits, so after about 200 requests the connection
/// was closed with GOAWAY ENHANCE_YOUR_CALM and the requests in flight on it were lost.
final class EndStreamCoalescer: ChannelOutboundHandler {
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    /// A DATA frame written but not yet passed on, with its promise.
    private var held: (HTTP2Frame.FramePayload.Data, EventLoopPromise<Void>?)?

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let payload = self.unwrapOutboundIn(data)
        if case .data(let frame) = payload {
            if frame.endStream, frame.data.readableBytes == 0, case (var last, let lastPromise)? = self.held {
                // The end of the stream: ride on the DATA frame before it.
                self.held = nil
                last.endStream = true
                let combined: EventLoopPromise<Void>?
                switch (promise, lastPromise) {
                case (let promise?, let lastPromise?):
                    promise.futureResult.cascade(to: lastPromise)
                    combined = promise
                case (let promise?, nil):
                    combined = promise
                case (nil, let lastPromise):
                    combined = lastPromise
                }
                context.write(self.wrapOutboundOut(.data(last)), promise: combined)
                return
            }
            if !frame.endStream {
                self.release(context: context)
                self.held = (frame, promise)
                return
            }
        }
        self.release(context: context)
        context.write(data, promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        self.release(context: context)
        context.flush()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if let (_, promise) = self.held {
            self.held = nil
            promise?.fail(ChannelError.ioOnClosedChannel)
        }
    }

    private func release(context: ChannelHandlerContext) {
        guard let (frame, promise) = self.held else { return }
        self.held = nil
        context.write(self.wrapOutboundOut(.data(frame)), promise: promise)
    }
}
