import HTTPTypes
public import NIOCore
public import NIOHTTPTypes

/// Remembers when the last message end (`.end` of a request or response) has actually been written, so
/// a channel is closed only after it: `NIOAsyncChannel` closes as soon as its body returns, which can be
/// before queued writes reach the network (for an HTTP/2 stream that means RST_STREAM and a lost tail).
public final class EndWriteTracker<Part: Sendable>: ChannelOutboundHandler, RemovableChannelHandler {
    public typealias OutboundIn = Part
    public typealias OutboundOut = Part

    private let isEnd: (Part) -> Bool
    private var lastEnd: EventLoopFuture<Void>?

    /// Tracks `.end` parts of responses.
    public init() where Part == HTTPResponsePart {
        self.isEnd = { if case .end = $0 { true } else { false } }
    }

    /// Tracks `.end` parts of requests.
    public init() where Part == HTTPRequestPart {
        self.isEnd = { if case .end = $0 { true } else { false } }
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard self.isEnd(self.unwrapOutboundIn(data)) else {
            context.write(data, promise: promise)
            return
        }
        let written = promise ?? context.eventLoop.makePromise()
        self.lastEnd = written.futureResult
        context.write(data, promise: written)
    }

    /// Completes once the last `.end` written so far is out (or failed); at once if none was written.
    func endWritten(on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        guard let lastEnd = self.lastEnd else { return eventLoop.makeSucceededVoidFuture() }
        return lastEnd.flatMapErrorThrowing { _ in () }
    }
}

@available(*, unavailable)
extension EndWriteTracker: Sendable {}

/// Closing a channel only after its final part left.
public enum GracefulClose {
    /// Waits (at most `timeout`) until the last `.end` written through `channel`'s ``EndWriteTracker`` is out.
    /// Call it after the last write and before the channel is closed.
    public static func waitForEnd<Part: Sendable>(of channel: any Channel, part: Part.Type, timeout: TimeAmount = .seconds(30)) async {
        let future: EventLoopFuture<Void> = channel.eventLoop.flatSubmit {
            guard let tracker = try? channel.pipeline.syncOperations.handler(type: EndWriteTracker<Part>.self) else {
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            let written = tracker.endWritten(on: channel.eventLoop)
            let done = channel.eventLoop.makePromise(of: Void.self)
            let timer = channel.eventLoop.scheduleTask(in: timeout) { done.succeed() }
            written.whenComplete { _ in
                timer.cancel()
                done.succeed()
            }
            return done.futureResult
        }
        try? await future.get()
    }
}

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
