import AsyncHTTPClient
public import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import SallyportTunnel
import SallyportWire

/// A client of the relay's admin API over its Unix socket: what `sallyport connectors …` and the demo use.
public struct AdminClient: Sendable {
    /// The call did not succeed; `description` is the relay's message or why the socket could not be reached.
    public struct Failure: Error, CustomStringConvertible {
        /// True when the relay could not be reached at all.
        public var unreachable: Bool
        public var description: String
    }

    /// The socket path (`admin.socket` of relay.yaml).
    public var socket: String

    public init(socket: String) {
        self.socket = socket
    }

    /// Sends `method path` with an optional JSON body; returns the JSON answer of a 2xx status.
    public func call(_ method: String, _ path: String, json body: Data? = nil) async throws(Failure) -> Data {
        guard let url = URL(httpURLWithSocketPath: self.socket, uri: path) else {
            throw Failure(unreachable: true, description: "bad admin socket path \(self.socket)")
        }
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = HTTPMethod(rawValue: method)
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: body))
        }
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        let data: Data
        let status: UInt
        do {
            let response = try await client.execute(request, timeout: .seconds(30))
            data = Data(buffer: try await response.body.collect(upTo: 16 << 20))
            status = response.status.code
            try? await client.shutdown()
        } catch {
            try? await client.shutdown()
            throw Failure(
                unreachable: true,
                description: "cannot reach the relay's admin socket \(self.socket): \(error). Is the relay running, and are you its user (or root)?"
            )
        }
        guard (200..<300).contains(status) else {
            let message = (try? JSONDecoder().decode(Registration.Refusal.self, from: data))?.message ?? String(decoding: data, as: UTF8.self)
            throw Failure(unreachable: false, description: message)
        }
        return data
    }

    /// Creates a registration token; returns the token and the command to run on the connector host.
    public func createToken(group: String, expires: String = "1h", uses: Int = 1) async throws(Failure) -> (token: String, command: String) {
        let body = try? JSONSerialization.data(withJSONObject: ["group": group, "expires": expires, "uses": uses])
        let data = try await self.call("POST", "/v1/tokens", json: body)
        guard let created = try? JSONEndpoint.decoder.decode(TokenCreated.self, from: data) else {
            throw Failure(unreachable: false, description: "the relay's answer is not a token: \(String(decoding: data, as: UTF8.self).prefix(200))")
        }
        return (created.token, created.command)
    }
}
