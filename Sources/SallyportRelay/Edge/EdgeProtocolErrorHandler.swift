import NIOCore
import NIOHTTP1

/// Answers a request the HTTP/1.1 decoder refused, before the decoder closes the connection: 431 when its
/// head is too large (too many fields, a field or all fields too long; RFC 6585), 400 for anything else.
/// In place of NIO's `HTTPServerProtocolErrorHandler`, which answers 400 to both.
final class EdgeProtocolErrorHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var responseInProgress = false

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let parserError = error as? HTTPParserError, !self.responseInProgress {
            let status: HTTPResponseStatus = parserError == .headerOverflow ? .requestHeaderFieldsTooLarge : .badRequest
            let head = HTTPResponseHead(version: .http1_1, status: status, headers: HTTPHeaders([("Connection", "close"), ("Content-Length", "0")]))
            context.write(self.wrapOutboundOut(.head(head)), promise: nil)
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
            self.responseInProgress = true
        }
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch self.unwrapOutboundIn(data) {
        case .head(let head) where head.status.code >= 200:
            self.responseInProgress = true
        case .head, .body:
            break
        case .end:
            self.responseInProgress = false
        }
        context.write(data, promise: promise)
    }
}

@available(*, unavailable)
extension EdgeProtocolErrorHandler: Sendable {}
