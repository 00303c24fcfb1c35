import Foundation
import HTTPTypes
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOPosix
import SallyportConfig
import SallyportHTTP
import SallyportOps
import SallyportState
import SallyportTunnel
import SallyportWire

/// The admin API: HTTP/JSON on a Unix socket that only the relay's user can open (mode 0600 in a 0700
/// directory). `sallyport connectors …` and `sallyport groups list` use it; so can automation. Never on the
/// public or tunnel listeners. Routes: docs/admin-api.md.
struct AdminAPI: Sendable {
    let membership: Membership
    let catalog: AppCatalog
    /// Which connectors cannot reach which backends, from their answers (for `/v1/health`).
    let reachability: Reachability
    let logger: Logger

    /// `GET /v1/health`: what `sallyport doctor --relay` asks the running relay.
    struct Health: Codable, Sendable, Equatable {
        /// App files the relay refused at its last reload, as `file:line:column: key: message`.
        var rejected: [String]
        var apps: [AppHealth]
    }

    func health() async throws -> Health {
        let snapshot = self.catalog.snapshot
        let connectors = try await self.membership.status()
        let groups = try await self.membership.groups(apps: snapshot.apps.map { (name: $0.name, group: $0.connectorGroup) }, connectors: connectors)
        let apps = AppHealth.of(snapshot.apps, groups: groups, connectors: connectors, reachability: self.reachability)
        return Health(rejected: self.catalog.lastErrors.map { "\($0)" }, apps: apps)
    }

    /// Binds the socket, replacing a stale one left by a relay that did not stop cleanly.
    static func bind(path: String, group: any EventLoopGroup, logger: Logger) async throws -> Listener<JSONEndpoint.Connection> {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let server = try await Listener.bind("admin socket", at: .unix(path: path), backlog: 128, group: group, logger: logger) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                return try JSONEndpoint.Connection(wrappingChannelSynchronously: channel)
            }
        }
        // Owner only; the directory is 0700 as well, so no one else could connect even before this.
        guard chmod(path, 0o600) == 0 else {
            await server.close()
            throw RelayState.StartError(description: "admin.socket: cannot restrict \(path) to its owner: \(String(cString: strerror(errno)))")
        }
        return server
    }

    var endpoint: JSONEndpoint {
        JSONEndpoint(logger: self.logger) { request, body in await self.handle(request, body: body) }
    }

    struct TokenRequest: Codable {
        var group: String
        /// "1h", "30m", "7d".
        var expires: String?
        var uses: Int?
    }

    struct MoveRequest: Codable { var group: String }

    struct DrainRequest: Codable { var force: Bool? }

    struct Deleted: Codable { var deleted: String }

    struct FlushRequest: Codable { var user: String? }

    struct Flushed: Codable { var connectors: [String] }

    struct AddRequest: Codable {
        var certificate: String
        var group: String
        var name: String?
    }

    /// A token as listed: never its secret.
    struct TokenInfo: Codable {
        var id: String
        var group: String
        var createdAt: Date
        var expiresAt: Date
        var uses: Int
        var usesLeft: Int
        var state: String
    }

    func handle(_ request: HTTPRequest, body: Data) async -> JSONEndpoint.Reply {
        let path = (request.path ?? "/").split(separator: "?").first.map(String.init) ?? "/"
        let parts = path.split(separator: "/").map(String.init)
        do {
            switch (request.method, parts) {
            case (.get, ["v1", "connectors"]):
                return .json(try await self.membership.status())
            case (.post, ["v1", "connectors"]):
                let add = try JSONEndpoint.decode(AddRequest.self, from: body)
                try Self.checkGroup(add.group)
                return .json(try await self.membership.add(certificatePEM: add.certificate, name: add.name, group: add.group), status: .created)
            case (.post, let route) where route.count == 4 && route[0] == "v1" && route[1] == "connectors" && route[3] == "move":
                let id = route[2]
                let move = try JSONEndpoint.decode(MoveRequest.self, from: body)
                try Self.checkGroup(move.group)
                return .json(try await self.membership.move(id: id, to: move.group))
            case (.post, let route) where route.count == 4 && route[0] == "v1" && route[1] == "connectors" && route[3] == "drain":
                let drain = try JSONEndpoint.decode(DrainRequest.self, from: body)
                return .json(try self.membership.drain(id: route[2], force: drain.force ?? false))
            case (.delete, let route) where route.count == 3 && route[0] == "v1" && route[1] == "connectors":
                let id = route[2]
                return .json(try await self.membership.remove(id: id))
            case (.get, ["v1", "health"]):
                return .json(try await self.health())
            case (.get, ["v1", "groups"]):
                let apps = self.catalog.snapshot.apps.map { (name: $0.name, group: $0.connectorGroup) }
                return .json(try await self.membership.groups(apps: apps))
            case (.post, ["v1", "tokens"]):
                let token = try JSONEndpoint.decode(TokenRequest.self, from: body)
                try Self.checkGroup(token.group)
                let expires = token.expires ?? "1h"
                guard let lifetime = ValueRules.duration(expires), lifetime > .zero else {
                    throw Registration.Refusal(error: "bad-request", message: "expires must be a duration such as 30m, 1h or 7d (got \"\(expires)\")")
                }
                let uses = token.uses ?? 1
                guard (1...10_000).contains(uses) else {
                    throw Registration.Refusal(error: "bad-request", message: "uses must be from 1 to 10000 (got \(uses))")
                }
                return .json(try await self.membership.createToken(group: token.group, expiresIn: lifetime, uses: uses), status: .created)
            case (.post, ["v1", "kcd", "flush"]):
                let flush = try JSONEndpoint.decode(FlushRequest.self, from: body)
                if let user = flush.user, user.isEmpty || user.count > 256 || user.contains(where: { $0.isWhitespace }) {
                    throw Registration.Refusal(error: "bad-request", message: "user must be a user principal name or account name without spaces")
                }
                return .json(Flushed(connectors: self.membership.flushKerberos(user: flush.user)))
            case (.get, ["v1", "tokens"]):
                let now = Date()
                let tokens = try await self.membership.store.tokens().map { token in
                    TokenInfo(
                        id: token.id, group: token.group, createdAt: token.createdAt, expiresAt: token.expiresAt, uses: token.uses, usesLeft: token.usesLeft,
                        state: token.usesLeft == 0 ? "used" : token.expiresAt <= now ? "expired" : "valid"
                    )
                }
                return .json(tokens)
            case (.delete, let route) where route.count == 3 && route[0] == "v1" && route[1] == "tokens":
                let id = route[2]
                guard try await self.membership.store.deleteToken(id: id) else {
                    throw Registration.Refusal(error: "not-found", message: "no token has id \(id); list them with: sallyport connectors token list")
                }
                return .json(Deleted(deleted: id))
            default:
                return .refusal(Registration.Refusal(error: "not-found", message: "no admin route \(request.method) \(path); see docs/admin-api.md"), status: .notFound)
            }
        } catch let refusal as Registration.Refusal {
            let status: HTTPResponse.Status =
                switch refusal.error {
                case "not-found": .notFound
                case "conflict": .conflict
                case "unavailable": .serviceUnavailable
                default: .badRequest
                }
            return .refusal(refusal, status: status)
        } catch {
            return .refusal(Registration.Refusal(error: "unavailable", message: "\(error)"), status: .serviceUnavailable)
        }
    }

    static func checkGroup(_ group: String) throws(Registration.Refusal) {
        if let problem = ValueRules.groupProblem(group) { throw Registration.Refusal(error: "bad-request", message: problem) }
    }
}
