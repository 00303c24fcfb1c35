import HTTPTypes
import Logging
import NIOCore
import NIOHTTPTypes
import SallyportHTTP
import SallyportTunnel

/// One request on one tunnel stream: the head goes first, then the request body is pumped by the calling task
/// (it owns the user's connection's iterator) while a child task pumps the response back, so both directions
/// stream with back-pressure and neither is ever held whole.
struct TunnelStreamIO: Sendable {
    typealias Iterator = NIOAsyncChannelInboundStream<HTTPRequestPart>.AsyncIterator
    typealias Writer = NIOAsyncChannelOutboundWriter<HTTPResponsePart>

    let stream: TunnelConnection.Stream
    let head: HTTPRequest
    let upgradeProtocol: String?
    let setCookies: [String]
    let context: EdgeRequestContext
    let requestID: String
    let logger: Logger

    /// Runs the exchange; says whether the user's connection stays open.
    func run(iterator: inout Iterator, writer: Writer) async -> ForwardOutcome {
        let (stream, logger, upgradeProtocol) = (self.stream, self.logger, self.upgradeProtocol)
        let requestDone = OnceFlag()
        do {
            return try await stream.executeThenClose { tunnelIn, tunnelOut in
                try await tunnelOut.write(.head(self.head))
                return try await withThrowingTaskGroup(of: ResponseResult.self) { group in
                    group.addTask { try await self.pumpResponse(from: tunnelIn, to: writer, requestDone: requestDone) }
                    let requestResult = await BodyPump.copyRequest(from: &iterator, to: tunnelOut, upgrading: upgradeProtocol != nil)
                    if requestResult == .complete {
                        requestDone.set()
                    } else {
                        // The client or the stream is gone: stop waiting for the rest of the answer.
                        stream.channel.close(promise: nil)
                    }
                    let response = try await group.next()!
                    switch response {
                    case .completed(let upgraded):
                        if requestResult == .complete {
                            await GracefulClose.waitForEnd(of: stream.channel, part: HTTPRequestPart.self)
                        }
                        if upgraded || requestResult != .complete || upgradeProtocol != nil { return .close }
                        return .keepAlive
                    case .truncated:
                        logger.warning("tunnel stream ended before the response was complete")
                        return .close
                    case .noResponse:
                        logger.warning("tunnel stream ended without a response")
                        _ = try? await RequestForwarder.writePage(.badGateway, requestID: self.requestID, writer: writer, close: true)
                        return .close
                    }
                }
            }
        } catch {
            logger.debug("request aborted", metadata: ["error": "\(error)"])
            return .close
        }
    }

    enum ResponseResult {
        case completed(upgraded: Bool)
        case truncated
        case noResponse
    }

    /// Copies the connector's response to the client.
    func pumpResponse(from tunnel: NIOAsyncChannelInboundStream<HTTPResponsePart>, to writer: Writer, requestDone: OnceFlag) async throws -> ResponseResult {
        let (context, upgradeProtocol, logger) = (self.context, self.upgradeProtocol, self.logger)
        let isHEAD = self.head.method == .head
        var headSent = false
        var upgraded = false
        // HTTP/2: once a Content-Length body is complete, END_STREAM goes out in the same flush as its last
        // bytes instead of when the tunnel's end arrives. Clients that see all the bytes before END_STREAM
        // (curl) reset the stream, and NIOHTTP2's rapid-reset guard closes the connection after 200 resets.
        var remaining: Int?
        var endedEarly = false
        do {
            for try await part in tunnel {
                switch part {
                case .head(var response):
                    if response.status.kind == .informational { continue }
                    for cookie in self.setCookies { response.headerFields.append(HTTPField(name: .setCookie, value: cookie)) }
                    if let reason = response.headerFields[TunnelProtocol.Field.error] {
                        logger.warning("connector answered for the backend", metadata: ["status": "\(response.status.code)", "reason": "\(reason)"])
                    }
                    if let upgradeProtocol, response.headerFields[TunnelProtocol.Field.upgraded] != nil {
                        TunnelProtocol.removeReserved(&response.headerFields)
                        try await Self.switchToRawBytes(response: response, upgradeProtocol: upgradeProtocol, writer: writer, channel: context.channel)
                        upgraded = true
                    } else {
                        TunnelProtocol.removeReserved(&response.headerFields)
                        HopByHop.strip(&response.headerFields)
                        if upgradeProtocol != nil { response.headerFields[.connection] = "close" }
                        if !context.isHTTP1, !isHEAD, response.status != .noContent, response.status != .notModified,
                            let length = response.headerFields[.contentLength].flatMap({ Int($0) }), length > 0
                        {
                            remaining = length
                        }
                        try await writer.write(.head(response))
                    }
                    headSent = true
                case .body(let buffer):
                    guard headSent else { return .noResponse }
                    if endedEarly { continue }
                    if let left = remaining {
                        remaining = left - buffer.readableBytes
                        if left == buffer.readableBytes {
                            endedEarly = true
                            try await writer.write(contentsOf: [.body(buffer), .end(nil)])
                            continue
                        }
                    }
                    try await writer.write(.body(buffer))
                case .end(let trailers):
                    guard headSent else { return .noResponse }
                    // After an upgrade the end carries no trailers; it only marks when the last bytes are out.
                    if !endedEarly { try await writer.write(.end(upgraded ? nil : trailers)) }
                    if context.isHTTP1, !requestDone.isSet {
                        // The answer is complete but the client is still sending: give it a moment, then close.
                        let channel = context.channel
                        channel.eventLoop.scheduleTask(in: .seconds(5)) {
                            if !requestDone.isSet { channel.close(promise: nil) }
                        }
                    }
                    return .completed(upgraded: upgraded)
                }
            }
        } catch where !headSent {
            // The stream was reset before any answer: the user gets a 502 page, not a dropped connection.
            logger.warning("tunnel stream failed before a response", metadata: ["error": "\(error)"])
            return .noResponse
        }
        if upgraded {
            // The backend side ended: deliver what is left, then close the user's connection.
            try await writer.write(.end(nil))
            await GracefulClose.waitForEnd(of: context.channel, part: HTTPResponsePart.self)
            context.channel.close(promise: nil)
            return .completed(upgraded: true)
        }
        if headSent { context.channel.close(promise: nil) }
        return headSent ? .truncated : .noResponse
    }

    /// Answers 101 and turns the client's HTTP/1.1 connection into a raw byte pipe.
    static func switchToRawBytes(response: HTTPResponse, upgradeProtocol: String, writer: Writer, channel: any Channel) async throws {
        var head = response
        head.status = .switchingProtocols
        HopByHop.strip(&head.headerFields)
        head.headerFields[.connection] = "Upgrade"
        head.headerFields[.upgrade] = upgradeProtocol
        try await writer.write(.head(head))
        try await channel.eventLoop.submit {
            try RawBytes.switchToRawBytes(channel.pipeline.syncOperations, side: .server, errorHandler: EdgeProtocolErrorHandler.self)
        }.get()
    }
}
