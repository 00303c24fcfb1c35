public import Foundation
public import HTTPTypes
public import Logging
public import NIOCore
import NIOFoundationCompat
public import NIOHTTPTypes

/// A small HTTP/1.1 request–response server for the relay's and connector's own endpoints (registration, the
/// admin API, metrics and status): each request's body (at most 1 MiB) is read whole, handed to `route`, and
/// the reply it returns is sent back. Never on the data path.
public struct SmallHTTPServer: Sendable {
    public typealias Connection = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

    /// One answer: a status, a body and its type.
    public struct Reply: Sendable {
        public var status: HTTPResponse.Status
        public var body: Data
        public var contentType: String
        /// More response fields (`Content-Security-Policy`…).
        public var headers: HTTPFields = [:]

        public init(status: HTTPResponse.Status, body: Data, contentType: String) {
            self.status = status
            self.body = body
            self.contentType = contentType
        }

        /// A text reply of any type (`text/plain`, `text/html`, the Prometheus exposition format).
        public static func text(_ text: String, status: HTTPResponse.Status = .ok, contentType: String = "text/plain; charset=utf-8") -> Reply {
            Reply(status: status, body: Data(text.utf8), contentType: contentType)
        }
    }

    /// The largest request body read; a larger one is answered with `tooLarge`.
    public static let maxBody = 1 << 20

    let logger: Logger
    let tooLarge: Reply
    let route: @Sendable (HTTPRequest, Data) async -> Reply

    /// A server whose requests `route` answers; a body over ``maxBody`` gets `tooLarge` instead.
    public init(logger: Logger, tooLarge: Reply? = nil, route: @escaping @Sendable (HTTPRequest, Data) async -> Reply) {
        self.logger = logger
        self.tooLarge = tooLarge ?? .text("request body over 1 MiB\n", status: .contentTooLarge)
        self.route = route
    }

    /// Serves requests on `connection` until the peer closes it.
    public func serve(_ connection: Connection) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequest?
                var body = ByteBuffer()
                var overflowed = false
                for try await part in inbound {
                    switch part {
                    case .head(let request):
                        head = request
                        body.clear()
                        overflowed = false
                    case .body(var chunk):
                        if body.readableBytes + chunk.readableBytes > Self.maxBody { overflowed = true } else { body.writeBuffer(&chunk) }
                    case .end:
                        guard let request = head else { continue }
                        let reply = overflowed ? self.tooLarge : await self.route(request, Data(buffer: body))
                        var response = HTTPResponse(status: reply.status, headerFields: reply.headers)
                        response.headerFields[.contentType] = reply.contentType
                        response.headerFields[.contentLength] = "\(reply.body.count)"
                        response.headerFields[.cacheControl] = "no-store"
                        let payload = request.method == .head ? ByteBuffer() : ByteBuffer(data: reply.body)
                        try await outbound.write(contentsOf: [.head(response), .body(payload), .end(nil)])
                        head = nil
                    }
                }
            }
        } catch {
            self.logger.debug("HTTP endpoint connection ended", metadata: ["error": "\(error)"])
        }
    }
}
