import Foundation
import HTTPTypes
import Logging
import SallyportHTTP
import SallyportTunnel
import SallyportWire

/// The JSON flavour of ``SmallHTTPServer``: the registration service on the tunnel listener and the admin API
/// share it. Replies are JSON, and a refusal says what went wrong in `Registration.Refusal`'s shape.
struct JSONEndpoint: Sendable {
    typealias Connection = SmallHTTPServer.Connection
    typealias Reply = SmallHTTPServer.Reply

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

    let server: SmallHTTPServer

    init(logger: Logger, route: @escaping @Sendable (HTTPRequest, Data) async -> Reply) {
        self.server = SmallHTTPServer(
            logger: logger,
            tooLarge: .refusal(Registration.Refusal(error: "bad-request", message: "request body over 1 MiB"), status: .contentTooLarge),
            route: route
        )
    }

    /// Serves requests on `connection` until the peer closes it.
    func serve(_ connection: Connection) async {
        await self.server.serve(connection)
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

extension SmallHTTPServer.Reply {
    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Self {
        Self(status: status, body: (try? JSONEndpoint.encoder.encode(value)) ?? Data("{}".utf8), contentType: "application/json")
    }

    static func refusal(_ refusal: Registration.Refusal, status: HTTPResponse.Status) -> Self {
        .json(refusal, status: status)
    }
}
