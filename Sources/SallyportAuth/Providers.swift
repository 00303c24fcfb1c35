import AsyncHTTPClient
import Crypto
import Foundation
import HTTPTypes
import Logging
import NIOCore
import NIOSSL
import SallyportConfig
import SallyportHTTP
import SallyportPluginAPI
import Synchronization

/// The relay's identity providers, set up from its config: an HTTP client each (closed by ``shutdown()``),
/// OIDC clients and JWT providers by name. A provider that cannot be set up is logged and left out.
struct Providers: Sendable {
    let oidc: [String: OIDCClient]
    let jwt: [String: JWTProvider]
    private let clients: [HTTPClient]

    /// `sessionsAvailable`: OIDC providers need the session key; without it they are left out.
    init(config: RelayConfig, sessionsAvailable: Bool, logger: Logger) {
        var oidc: [String: OIDCClient] = [:]
        var jwt: [String: JWTProvider] = [:]
        var clients: [HTTPClient] = []
        for provider in config.identityProviders {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.minimumTLSVersion = .tlsv12
            if let caFile = provider.caFile { tls.trustRoots = .file(caFile) }
            var configuration = HTTPClient.Configuration(tlsConfiguration: tls, redirectConfiguration: .disallow)
            configuration.timeout = .init(connect: .seconds(5), read: .seconds(10))
            var providerLogger = logger
            providerLogger[metadataKey: "provider"] = "\(provider.name)"
            switch provider.kind {
            case .oidc(let settings):
                guard sessionsAvailable else { continue }
                let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
                // Shut down (asynchronously) by shutdown(), also when the provider cannot be set up.
                clients.append(client)
                do {
                    oidc[provider.name] = try OIDCClient(
                        name: provider.name, settings: settings, claims: provider.claims, clockSkew: provider.clockSkew, algorithms: provider.algorithms,
                        client: client, logger: providerLogger
                    )
                } catch {
                    logger.error("identity provider unavailable; its apps answer 503 until this is fixed and the relay restarts", metadata: ["error": "\(error)"])
                }
            case .jwt(let settings):
                let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
                clients.append(client)
                jwt[provider.name] = JWTProvider(
                    name: provider.name, settings: settings, claims: provider.claims, clockSkew: provider.clockSkew, algorithms: provider.algorithms,
                    client: client, logger: providerLogger
                )
            }
        }
        self.oidc = oidc
        self.jwt = jwt
        self.clients = clients
    }

    /// Closes the HTTP clients.
    func shutdown() async {
        for client in self.clients { try? await client.shutdown() }
    }
}
