import HTTPTypes
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import SallyportAuth
import SallyportConfig
import SallyportHTTP
import SallyportPluginAPI
import SallyportTunnel
import Synchronization

/// Where a public request came from.
struct EdgeRequestContext: Sendable {
    /// The public channel: an HTTP/1.1 connection or one HTTP/2 stream.
    let channel: any Channel
    /// The user's address.
    let clientAddress: String
    /// An id of the user's connection (HTTP/1.1 or HTTP/2), for the connector's connection binding.
    let connectionID: String
    /// HTTP/1.1 (keep-alive, upgrades) rather than an HTTP/2 stream.
    let isHTTP1: Bool
}

/// What the connection does after a request.
enum ForwardOutcome: Sendable {
    case keepAlive
    case close
}

/// Forwards one public request through a tunnel stream to a connector and streams the answer back.
///
/// The request body is pumped by the calling task (it owns the connection's iterator) while a child task pumps
/// the response, so both directions stream with back-pressure and neither is ever held whole.
struct RequestForwarder: Sendable {
    typealias Iterator = NIOAsyncChannelInboundStream<HTTPRequestPart>.AsyncIterator
    typealias Writer = NIOAsyncChannelOutboundWriter<HTTPResponsePart>

    let catalog: AppCatalog
    let registry: ConnectorRegistry
    let authenticator: PreAuthenticator
    let limits: EdgeLimits
    let logger: Logger

    /// How long a request of an app that no connector has yet may wait for its configuration to arrive.
    static let configurationWait: Duration = .seconds(3)

    /// Headers a client may not set: the relay sets the forwarding headers itself (the connector writes them
    /// for the backend from tunnel metadata).
    static let clientForwardingHeaders: [HTTPField.Name] = [
        HTTPField.Name("X-Forwarded-For")!,
        HTTPField.Name("X-Forwarded-Proto")!,
        HTTPField.Name("X-Forwarded-Host")!,
        HTTPField.Name("X-Forwarded-Port")!,
        HTTPField.Name("X-Real-IP")!,
        HTTPField.Name("Forwarded")!,
    ]

    func forward(head: HTTPRequest, iterator: inout Iterator, writer: Writer, context: EdgeRequestContext) async -> ForwardOutcome {
        let requestID = RequestID.make()
        var logger = self.logger
        logger[metadataKey: "request.id"] = "\(requestID)"

        if let path = head.path, path.utf8.count > self.limits.maxRequestLineBytes {
            return await self.answerLocally(.badRequest("The request address is too long.", status: .uriTooLong), requestID: requestID, iterator: &iterator, writer: writer, context: context)
        }
        if head.headerFields.count > self.limits.maxHeaderCount {
            return await self.answerLocally(
                .badRequest("The request has too many headers.", status: .requestHeaderFieldsTooLarge),
                requestID: requestID, iterator: &iterator, writer: writer, context: context
            )
        }
        guard let authority = head.authority, !authority.isEmpty, let path = head.path, path.hasPrefix("/") else {
            return await self.answerLocally(.badRequest("The request has no Host header or no path."), requestID: requestID, iterator: &iterator, writer: writer, context: context)
        }
        let snapshot = self.catalog.snapshot
        if path.hasPrefix(PreAuthenticator.reservedPathPrefix) {
            // The relay's own paths (health, sign-in callback, sign-out); never forwarded.
            if path == PreAuthenticator.healthPath {
                return await self.answerLocally(ErrorPage(status: .ok, title: "OK", detail: "The relay is up."), requestID: requestID, iterator: &iterator, writer: writer, context: context)
            }
            guard let providers = snapshot.routes.providers(onHost: authority) else {
                return await self.answerLocally(.notFound, requestID: requestID, iterator: &iterator, writer: writer, context: context)
            }
            let page = await self.authenticator.handleReserved(head, authority: authority, providers: providers, logger: logger)
            return await self.answerLocally(page, requestID: requestID, iterator: &iterator, writer: writer, context: context)
        }
        guard let app = snapshot.routes.route(authority: authority, path: path) else {
            logger.debug("no app for request", metadata: ["host": "\(authority)"])
            return await self.answerLocally(.notFound, requestID: requestID, iterator: &iterator, writer: writer, context: context)
        }
        logger[metadataKey: "app"] = "\(app.name)"

        // Pre-authentication: unless the app is passthrough, nothing goes on until the user is known and allowed.
        let identity: Identity?
        let setCookies: [String]
        switch await self.authenticator.authenticate(head, app: app, authority: authority, logger: logger) {
        case .answer(let page):
            return await self.answerLocally(page, requestID: requestID, iterator: &iterator, writer: writer, context: context)
        case .forward(let user, let cookies):
            identity = user
            setCookies = cookies
            if let user { logger[metadataKey: "user"] = "\(user.userPrincipalName)" }
        }

        // The request as it crosses the tunnel: end-to-end headers only, plus tunnel metadata.
        var tunnelHead = head
        tunnelHead.scheme = "https"
        let upgradeProtocol = Self.requestedUpgrade(head, isHTTP1: context.isHTTP1)
        let expectsContinue = head.headerFields[.expect]?.lowercased() == "100-continue"
        HopByHop.strip(&tunnelHead.headerFields)
        TunnelProtocol.removeReserved(&tunnelHead.headerFields)
        for name in Self.clientForwardingHeaders { tunnelHead.headerFields[values: name] = [] }
        // The relay's session cookies are credentials for the relay: the backend never sees them.
        PreAuthenticator.removeRelayCookies(from: &tunnelHead.headerFields)
        tunnelHead.headerFields[.expect] = nil
        tunnelHead.headerFields[TunnelProtocol.Field.app] = app.name
        tunnelHead.headerFields[TunnelProtocol.Field.clientAddress] = context.clientAddress
        tunnelHead.headerFields[TunnelProtocol.Field.clientConnection] = context.connectionID
        tunnelHead.headerFields[TunnelProtocol.Field.requestID] = requestID
        if let upgradeProtocol { tunnelHead.headerFields[TunnelProtocol.Field.upgrade] = upgradeProtocol }
        if let identity { tunnelHead.headerFields[TunnelProtocol.Field.identity] = IdentityField.encode(identity) }

        // A connector of the app's group that has this app's configuration; another one if opening fails.
        let version = snapshot.appVersions[app.name] ?? AppCatalog.AppVersion(changed: snapshot.generation, introduced: snapshot.generation)
        var tried: [UInt64] = []
        var chosen: (TunnelConnection, TunnelConnection.Stream)?
        while tried.count < 3,
            let connection = await self.registry.pick(group: app.connectorGroup, app: version, excluding: tried, wait: Self.configurationWait)
        {
            do {
                chosen = (connection, try await connection.openStream())
                break
            } catch {
                tried.append(connection.id)
                logger.warning("could not open a tunnel stream; trying another connection", metadata: ["connector": "\(connection.connector)", "error": "\(error)"])
            }
        }
        guard let (connection, stream) = chosen else {
            logger.warning("no connector available for the app's group", metadata: ["group": "\(app.connectorGroup)"])
            return await self.answerLocally(.noConnector, requestID: requestID, iterator: &iterator, writer: writer, context: context)
        }
        defer { connection.finished() }
        logger[metadataKey: "connector"] = "\(connection.connector)"

        if expectsContinue, context.isHTTP1, upgradeProtocol == nil {
            try? await writer.write(.head(HTTPResponse(status: .continue)))
        }

        let requestDone = OnceFlag()
        let streamLogger = logger
        let isHEAD = tunnelHead.method == .head
        do {
            return try await stream.executeThenClose { tunnelIn, tunnelOut in
                try await tunnelOut.write(.head(tunnelHead))
                return try await withThrowingTaskGroup(of: ResponseResult.self) { group in
                    group.addTask {
                        try await Self.pumpResponse(
                            from: tunnelIn, to: writer, context: context, upgradeProtocol: upgradeProtocol,
                            setCookies: setCookies, requestDone: requestDone, isHEAD: isHEAD, logger: streamLogger
                        )
                    }
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
                        _ = try? await self.writePage(.badGateway, requestID: requestID, writer: writer, close: true)
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
    static func pumpResponse(
        from tunnel: NIOAsyncChannelInboundStream<HTTPResponsePart>,
        to writer: Writer,
        context: EdgeRequestContext,
        upgradeProtocol: String?,
        setCookies: [String],
        requestDone: OnceFlag,
        isHEAD: Bool = false,
        logger: Logger
    ) async throws -> ResponseResult {
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
                    for cookie in setCookies { response.headerFields.append(HTTPField(name: .setCookie, value: cookie)) }
                    if let reason = response.headerFields[TunnelProtocol.Field.error] {
                        logger.warning("connector answered for the backend", metadata: ["status": "\(response.status.code)", "reason": "\(reason)"])
                    }
                    if let upgradeProtocol, response.headerFields[TunnelProtocol.Field.upgraded] != nil {
                        TunnelProtocol.removeReserved(&response.headerFields)
                        try await switchToRawBytes(response: response, upgradeProtocol: upgradeProtocol, writer: writer, channel: context.channel)
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
            try EdgePipeline.switchToRawBytes(channel.pipeline.syncOperations)
        }.get()
    }

    /// The protocol a client asks to switch to (HTTP/1.1 `Connection: upgrade` + `Upgrade: x`), if any.
    static func requestedUpgrade(_ head: HTTPRequest, isHTTP1: Bool) -> String? {
        guard isHTTP1, let upgrade = head.headerFields[.upgrade], HopByHop.connectionTokens(head.headerFields).contains("upgrade") else {
            return nil
        }
        return upgrade
    }

    /// Answers from the relay itself. Reads a small request body so the connection can stay open, else closes.
    func answerLocally(_ page: ErrorPage, requestID: String, iterator: inout Iterator, writer: Writer, context: EdgeRequestContext) async -> ForwardOutcome {
        var drained = 0
        var complete = false
        do {
            while let part = try await iterator.next() {
                if case .body(let buffer) = part { drained += buffer.readableBytes }
                if case .end = part { complete = true; break }
                if drained > 64 * 1024 { break }
            }
        } catch {}
        let close = !complete || !context.isHTTP1
        do {
            try await self.writePage(page, requestID: requestID, writer: writer, close: close && context.isHTTP1)
        } catch {
            return .close
        }
        return close ? .close : .keepAlive
    }

    func writePage(_ page: ErrorPage, requestID: String, writer: Writer, close: Bool) async throws {
        let (head, body) = page.render(requestID: requestID, allocator: ByteBufferAllocator(), close: close)
        try await writer.write(contentsOf: [.head(head), .body(body), .end(nil)])
    }
}

/// Short random request ids for logs and error pages.
enum RequestID {
    static func make() -> String {
        let value = UInt64.random(in: 0...UInt64.max)
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
