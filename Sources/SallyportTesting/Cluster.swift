import Foundation

/// Several relays of one service on loopback: the same certificates and connector CA, their state in one
/// PostgreSQL database, each with its own app directory (written alike by ``writeApp``), and HAProxy in front
/// of their public ports (servers checked with `/readyz`) and tunnel ports (TCP). Connectors register and dial through the balancer and learn the relays
/// from the one they reach.
public final class Cluster: @unchecked Sendable {
    /// The relays; ``Deployment/startConnector`` of any of them starts a connector that dials the balancer.
    public let relays: [Deployment]
    public let postgres: PostgresServer
    public let balancer: HAProxy

    /// The balancer's public port (users) and tunnel port (connectors).
    public var publicPort: Int { self.balancer.ports["public"]! }
    public var tunnelPort: Int { self.balancer.ports["tunnel"]! }

    private init(relays: [Deployment], postgres: PostgresServer, balancer: HAProxy) {
        self.relays = relays
        self.postgres = postgres
        self.balancer = balancer
    }

    /// Prepares `count` relays publishing `hosts`, starts PostgreSQL and the balancer; the relays are not started
    /// (``startRelays()``). `relayExtra` is appended to every relay file.
    public static func make(relays count: Int = 2, hosts: [String], relayExtra: String = "") async throws -> Cluster {
        let postgres = try await PostgresServer.start()
        try await postgres.createDatabase("sallyport")
        let store = """
            store:
              postgres:
                host: \(postgres.host)
                port: \(postgres.port)
                database: sallyport
                user: \(postgres.user)
                passwordFile: \(postgres.passwordFile)
                tls: disable
            """
        let first = try Deployment(hosts: hosts, relayExtra: store + "\n" + relayExtra, announceTunnelAddress: true)
        var relays = [first]
        for _ in 1..<count {
            relays.append(try Deployment(hosts: hosts, relayExtra: store + "\n" + relayExtra, sharing: first.pki, announceTunnelAddress: true))
        }
        let balancer = try await HAProxy.start(
            directory: first.directory, frontends: ["public": relays.map(\.publicPort), "tunnel": relays.map(\.tunnelPort)],
            readiness: ["public": relays.map(\.adminPort)]
        )
        for relay in relays { relay.dialAddress = "localhost:\(balancer.ports["tunnel"]!)" }
        return Cluster(relays: relays, postgres: postgres, balancer: balancer)
    }

    /// Starts every relay, one after the other.
    public func startRelays() async throws {
        for relay in self.relays { try await relay.startRelay() }
    }

    /// Writes the same app file into every relay's app directory.
    public func writeApp(name: String, internalURL: String, group: String = "default") throws {
        for relay in self.relays { try relay.writeApp(name: name, internalURL: internalURL, group: group) }
    }

    /// The public URL of `host` through the balancer.
    public func url(_ host: String, _ path: String = "/") -> String {
        "https://\(host).localhost:\(self.publicPort)\(path)"
    }

    /// Stops connectors, relays, the balancer and the database; removes their directories.
    public func shutdown() async {
        for relay in self.relays.reversed() { await relay.shutdown() }
        await self.balancer.stop()
        await self.postgres.stop()
    }
}
