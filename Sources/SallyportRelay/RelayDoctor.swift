import AsyncHTTPClient
import Foundation
import Logging
public import NIOCore
public import NIOPosix
import NIOHTTP1
import NIOSSL
public import SallyportConfig
import SallyportState
public import SallyportOps

/// `sallyport doctor --relay` on the relay host: every file the relay file names, whether the relay is running
/// (its admin listener's `/readyz`) or else whether its addresses can be listened on, and each identity
/// provider's discovery document or keys, fetched from this host.
public struct RelayDoctor: Sendable {
    let config: RelayConfig
    let group: any EventLoopGroup

    public init(config: RelayConfig, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.config = config
        self.group = group
    }

    /// What the running relay says through its admin socket: app files it refused, apps it cannot serve.
    func runningSteps() async -> [DoctorStep] {
        let data: Data
        do {
            data = try await AdminClient(socket: self.config.adminSocket).call("GET", "/v1/health")
        } catch {
            // Not running, or this user may not open the socket: the listener check says which.
            return error.unreachable ? [] : [DoctorStep("apps", .warn, "the relay's admin socket did not answer: \(error)", fix: "run doctor as the relay's user")]
        }
        guard let health = try? JSONDecoder().decode(AdminAPI.Health.self, from: data) else {
            return [DoctorStep("apps", .warn, "the running relay answered /v1/health with something else (an older relay?)")]
        }
        var steps = health.rejected.map {
            DoctorStep("apps", .fail, "refused by the running relay: \($0)", fix: "fix the file; the relay reloads it within seconds (or at once on SIGHUP)")
        }
        for app in health.apps {
            switch app.health {
            case "ok": steps.append(DoctorStep("app \(app.name)", .ok, "served: a connector of its group is active and reaches the backend"))
            case "no-connector":
                steps.append(DoctorStep("app \(app.name)", .fail, "no active connector in its group: it answers 502", fix: "start a connector of the group (sallyport connectors list)"))
            default:
                steps.append(
                    DoctorStep(
                        "app \(app.name)", .fail, "backend unreachable from \(app.unreachableFrom.joined(separator: ", ")) at its last request",
                        fix: "on that connector host: sallyport doctor (is the backend up, and reachable from there?)"
                    )
                )
            }
        }
        return steps
    }

    public func run() async -> [DoctorStep] {
        var steps: [DoctorStep] = []
        let files = RelayFiles.check(self.config)
        steps.append(
            files.errors.isEmpty
                ? DoctorStep("files", .ok, "certificates, keys, CAs and secrets readable; every key is its certificate's")
                : DoctorStep("files", .fail, files.errors.joined(separator: "\n     "), fix: "fix each file named above")
        )
        steps += files.warnings.map { DoctorStep("files", .warn, $0) }

        let client = HTTPClient(eventLoopGroupProvider: .shared(self.group), configuration: .init(timeout: .init(connect: .seconds(5), read: .seconds(10))))
        var running = false
        if let admin = self.config.adminListen {
            let host = admin.host == "0.0.0.0" ? "127.0.0.1" : admin.host == "::" ? "::1" : admin.host
            if let (status, body) = await Self.get("http://\(HostPort(host: host, port: admin.port))/readyz", client: client) {
                running = true
                steps.append(
                    status == 200
                        ? DoctorStep("relay", .ok, "running: \(body.trimmingCharacters(in: .whitespacesAndNewlines))")
                        : DoctorStep("relay", .warn, "running, \(body.trimmingCharacters(in: .whitespacesAndNewlines))", fix: "check the apps directory and the relay's log")
                )
            }
        }
        if running || FileManager.default.fileExists(atPath: self.config.adminSocket) {
            steps += await self.runningSteps()
        }
        if !running {
            steps.append(DoctorStep("relay", .warn, "not running (its admin listener does not answer)", fix: "systemctl start sallyport-relay, once every step here is ok"))
            let addresses = [("public.listen", self.config.publicListen)] + (self.config.tunnelListen.map { [("tunnel.listen", $0)] } ?? [])
                + (self.config.adminListen.map { [("admin.listen", $0)] } ?? [])
            for (key, address) in addresses {
                steps.append(await self.bindStep(key, address))
            }
        }
        if case .postgres(let postgres) = self.config.store { steps.append(await Self.storeStep(postgres)) }
        for provider in self.config.identityProviders { steps += await self.providerSteps(provider, client: client) }
        try? await client.shutdown()
        return steps
    }

    /// Whether the PostgreSQL store answers, with the relay's login and TLS settings.
    static func storeStep(_ config: PostgresConfig) async -> DoctorStep {
        let configuration: PostgresStore.Configuration
        do {
            configuration = try RelayState.postgresConfiguration(config)
        } catch {
            return DoctorStep("store", .fail, "\(error)", fix: "fix store.postgres.passwordFile")
        }
        switch await PostgresStore.check(configuration, logger: Logger(label: "sallyport.doctor")) {
        case .success(let sentence): return DoctorStep("store", .ok, sentence)
        case .failure(let error): return DoctorStep("store", .fail, error.description, fix: "see the message; the relay cannot start without its store")
        }
    }

    /// Whether the relay could listen on `address` now.
    func bindStep(_ key: String, _ address: HostPort) async -> DoctorStep {
        do {
            // As the relay binds: SO_REUSEADDR, so connections of a stopped relay in TIME_WAIT do not count.
            let channel = try await ServerBootstrap(group: self.group).serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: address.host, port: address.port).get()
            try? await channel.close()
            return DoctorStep("listen", .ok, "\(key) \(address) is free")
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            return DoctorStep("listen", .fail, "\(key) \(address) is in use by another process", fix: "find it with ss -ltnp 'sport = :\(address.port)'")
        } catch let error as IOError where error.errnoCode == EACCES {
            return DoctorStep("listen", .fail, "\(key) \(address): permission denied", fix: "ports below 1024 need CAP_NET_BIND_SERVICE (the packaged unit grants it)")
        } catch {
            return DoctorStep("listen", .fail, "\(key) \(address) cannot be listened on: \(error)", fix: "is the address on this machine?")
        }
    }

    func providerSteps(_ provider: IdentityProviderConfig, client: HTTPClient) async -> [DoctorStep] {
        let name = "provider \(provider.name)"
        var urls: [(what: String, url: String)] = []
        switch provider.kind {
        case .oidc(let settings):
            urls.append(("discovery document", settings.issuer.hasSuffix("/") ? settings.issuer + ".well-known/openid-configuration" : settings.issuer + "/.well-known/openid-configuration"))
        case .jwt(let settings):
            for issuer in settings.issuers {
                if case .url(let url) = issuer.keys { urls.append(("keys of \(issuer.issuer)", url)) }
            }
        }
        var steps: [DoctorStep] = []
        let own = provider.caFile.flatMap { Self.client(trusting: $0, group: self.group) }
        for (what, url) in urls {
            let client = own ?? client
            if let (status, body) = await Self.get(url, client: client) {
                let parsed = (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]
                if status == 200, parsed != nil {
                    steps.append(DoctorStep(name, .ok, "\(what) at \(url) fetched"))
                } else {
                    steps.append(DoctorStep(name, .fail, "\(what) at \(url): \(status == 200 ? "not JSON" : "status \(status)")", fix: "check the provider's issuer or jwksURL"))
                }
            } else {
                steps.append(
                    DoctorStep(name, .fail, "\(what) at \(url) cannot be fetched from this host", fix: "check DNS, the firewall, and caFile when the provider uses a private CA")
                )
            }
        }
        try? await own?.shutdown()
        return steps
    }

    static func client(trusting caFile: String, group: any EventLoopGroup) -> HTTPClient? {
        guard let roots = try? NIOSSLCertificate.fromPEMFile(caFile) else { return nil }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(roots)
        return HTTPClient(eventLoopGroupProvider: .shared(group), configuration: .init(tlsConfiguration: tls, timeout: .init(connect: .seconds(5), read: .seconds(10))))
    }

    /// GET `url`: status and body (up to 1 MiB), or nil when nothing answered.
    static func get(_ url: String, client: HTTPClient) async -> (UInt, String)? {
        do {
            let response = try await client.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 1 << 20)
            return (response.status.code, String(buffer: body))
        } catch {
            return nil
        }
    }
}
