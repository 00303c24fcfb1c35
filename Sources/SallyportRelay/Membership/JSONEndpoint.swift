import Foundation
import HTTPTypes
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTPTypes
import SallyportTunnel

/// A small HTTP/1.1 JSON endpoint: the registration service on the tunnel listener and the admin API share it.
/// Each request's body (at most 1 MiB) is read whole, handed to `route`, and the JSON it returns is sent back.
struct JSONEndpoint: Sendable {
    typealias Connection = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

    /// One answer: a status and a JSON body.
    struct Reply: Sendable {
        var status: HTTPResponse.Status
        var body: Data
        var contentType = "application/json"

        static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Reply {
            Reply(status: status, body: (try? JSONEndpoint.encoder.encode(value)) ?? Data("{}".utf8))
        }

        static func refusal(_ refusal: Registration.Refusal, status: HTTPResponse.Status) -> Reply {
            .json(refusal, status: status)
        }

        static func text(_ text: String, contentType: String) -> Reply {
            Reply(status: .ok, body: Data(text.utf8), contentType: contentType)
        }
    }

    static let maxBody = 1 << 20

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    let logger: Logger
    let route: @Sendable (HTTPRequest, Data) async -> Reply

    /// Serves requests on `connection` until the peer closes it.
    func serve(_ connection: Connection) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequest?
                var body = ByteBuffer()
                var tooLarge = false
                for try await part in inbound {
                    switch part {
                    case .head(let request):
                        head = request
                        body.clear()
                        tooLarge = false
                    case .body(var chunk):
                        if body.readableBytes + chunk.readableBytes > Self.maxBody { tooLarge = true } else { body.writeBuffer(&chunk) }
                    case .end:
                        guard let request = head else { continue }
                        let reply =
                            tooLarge
                            ? Reply.refusal(Registration.Refusal(error: "bad-request", message: "request body over 1 MiB"), status: .contentTooLarge)
                            : await self.route(request, Data(buffer: body))
                        var response = HTTPResponse(status: reply.status)
                        response.headerFields[.contentType] = reply.contentType
                        response.headerFields[.contentLength] = "\(reply.body.count)"
                        response.headerFields[.cacheControl] = "no-store"
                        try await outbound.write(.head(response))
                        try await outbound.write(.body(ByteBuffer(data: reply.body)))
                        try await outbound.write(.end(nil))
                        head = nil
                    }
                }
            }
        } catch {
            self.logger.debug("JSON endpoint connection ended", metadata: ["error": "\(error)"])
        }
    }

    /// Decodes a request body; a malformed one is a `bad-request` refusal that says what is wrong.
    static func decode<T: Decodable>(_ type: T.Type, from body: Data) throws(Registration.Refusal) -> T {
        do {
            return try Self.decoder.decode(type, from: body)
        } catch {
            throw Registration.Refusal(error: "bad-request", message: "malformed JSON body: \(error)")
        }
    }
}
