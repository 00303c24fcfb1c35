import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix
import NIOFoundationCompat
import NIOHTTP1
import X509
import NIOSSL
public import SallyportConfig
import SallyportPKI
import SallyportTunnel
public import SallyportWire

/// `sallyport connector register`: turns a one-time token into this connector's key, certificate, the relay's
/// CA and a minimal connector.yaml. Nothing is written unless the relay accepted the registration.
///
/// First contact trusts nothing: the relay's tunnel CA is fetched over unverified TLS and accepted only if its
/// public key matches the token's pin; the token itself then travels only over TLS verified against that CA.
public struct RegistrationClient: Sendable {
    /// What went wrong; the message says what to do.
    public struct Failure: Error, CustomStringConvertible {
        /// A stable code: the relay's refusal code, or `token-for-another-relay`, `unreachable`, `exists`, `write-failed`.
        public var code: String
        public var description: String
    }

    /// What registration wrote.
    public struct Outcome: Sendable {
        public var connectorID: String
        public var name: String
        public var group: String
        public var configFile: String
        public var files: [String]
    }

    public var relay: HostPort
    /// The name to verify on the relay's certificate; nil means `relay.host`.
    public var serverName: String?
    public var token: RegistrationToken
    public var name: String
    /// The group the administrator expects; refused if the token's differs.
    public var group: String?
    public var directory: String
    /// Replace an existing connector.yaml.
    public var force: Bool
    /// The HTTP proxy to reach the relay through; nil: directly.
    public var proxy: OutboundProxy?
    /// Write `proxy:` with this value into connector.yaml (the `--proxy` option as given).
    public var proxyLine: String?

    public init(relay: HostPort, serverName: String?, token: RegistrationToken, name: String, group: String?, directory: String, force: Bool) {
        self.relay = relay
        self.serverName = serverName
        self.token = token
        self.name = name
        self.group = group
        self.directory = directory
        self.force = force
    }

    var configFile: String { (self.directory as NSString).appendingPathComponent("connector.yaml") }
    func file(_ name: String) -> String { (self.directory as NSString).appendingPathComponent(name) }

    public func run() async throws(Failure) -> Outcome {
        if !self.force, FileManager.default.fileExists(atPath: self.configFile) {
            throw Failure(code: "exists", description: "\(self.configFile) exists: this host already has a connector. Pass --force to replace its registration, or --directory for another one")
        }
        let caPEM = try await self.fetchRelayCA()
        let keyAndRequest: KeyAndRequest
        do {
            keyAndRequest = try KeyAndRequest.generate(commonName: self.name)
        } catch {
            throw Failure(code: "key", description: "cannot generate a key: \(error)")
        }
        var request = Registration.Request(
            tokenID: self.token.id, secret: self.token.secret, name: self.name, host: ProcessInfo.processInfo.hostName, group: self.group,
            certificateRequest: keyAndRequest.requestPEM, software: SallyportVersion.current
        )
        request.replaces = self.replacement(for: request)
        let response = try await self.register(request, trusting: caPEM)
        do {
            try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
            try FileWriter.replace(keyAndRequest.privateKeyPEM, at: self.file("connector.key"), mode: 0o600)
            try FileWriter.replace(response.certificateChain, at: self.file("connector.pem"), mode: 0o644)
            try FileWriter.replace(response.relayCA, at: self.file("relay-ca.pem"), mode: 0o644)
            try FileWriter.replace(self.connectorYAML(response), at: self.configFile, mode: 0o640)
        } catch {
            throw Failure(code: "write-failed", description: "registered as \(response.connectorID), but \(error); remove it on the relay (sallyport connectors remove \(response.connectorID)) and register again")
        }
        return Outcome(
            connectorID: response.connectorID, name: response.name, group: response.group, configFile: self.configFile,
            files: [self.configFile, self.file("connector.pem"), self.file("connector.key"), self.file("relay-ca.pem")]
        )
    }

    /// With `--force` where this directory holds a registration: its certificate and the old key's signature,
    /// so the relay removes the old registration instead of keeping a second connector of this host.
    func replacement(for request: Registration.Request) -> Registration.Replacement? {
        guard self.force, let certificate = try? String(contentsOfFile: self.file("connector.pem"), encoding: .utf8),
            let key = try? String(contentsOfFile: self.file("connector.key"), encoding: .utf8),
            let signature = try? KeyAndRequest.sign(
                Registration.Replacement.message(tokenID: request.tokenID, certificateRequest: request.certificateRequest), privateKeyPEM: key
            )
        else { return nil }
        return Registration.Replacement(certificate: certificate, signature: signature.base64EncodedString())
    }

    /// What `proxy` answers a `CONNECT` to `relay`, in the words the running connector logs; nil when it opens
    /// the pipe (the failure was elsewhere) or cannot be reached at all.
    static func proxyRefusal(relay: HostPort, proxy: OutboundProxy) async -> String? {
        do {
            let channel = try await RelayDialer(relay: relay, proxy: proxy).connect(group: MultiThreadedEventLoopGroup.singleton)
            channel.close(promise: nil)
            return nil
        } catch let failure as ProxyFailure {
            return failure.description
        } catch {
            return nil
        }
    }

    private func connectorYAML(_ response: Registration.Response) -> String {
        """
        # Written by `sallyport connector register` on \(ISO8601DateFormatter().string(from: Date())).
        # This connector is \(response.connectorID) ("\(response.name)") in group \(response.group); the relay decides
        # its group (sallyport connectors move on the relay). Reference: docs/configuration.md
        relay: \(self.relay)
        \(self.serverName.map { "relayServerName: \($0)\n" } ?? "")name: \(response.name)
        certificate: connector.pem   # renewed by the connector itself, well before it expires
        key: connector.key
        relayCA: relay-ca.pem
        \(self.proxyLine.map { "proxy: \($0)\n" } ?? "")
        """
    }

    private var baseURL: String {
        self.serverName.map { "https://\(HostPort(host: $0, port: self.relay.port))" } ?? "https://\(self.relay)"
    }

    /// The relay's tunnel CA, accepted only if it matches the token's pin.
    private func fetchRelayCA() async throws(Failure) -> String {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        let pem = try await self.request(Registration.caPath, body: nil, tls: tls).body
        let pin: String
        do {
            let certificates = try CertificateFacts.certificates(pem: pem, source: "the relay's answer")
            pin = try CertificateFacts.pin(of: certificates[0].publicKey)
        } catch {
            throw Failure(code: "unreachable", description: "\(self.relay) did not answer as a Sallyport relay's tunnel listener (\(error)); check --relay")
        }
        guard pin == self.token.pin else {
            throw Failure(
                code: "token-for-another-relay",
                description: "this token was made by another relay: the relay at \(self.relay) presents a CA whose pin is \(pin), the token expects \(self.token.pin). Check --relay, or create the token on this relay (nothing was sent or written)"
            )
        }
        return pem
    }

    private func register(_ request: Registration.Request, trusting caPEM: String) async throws(Failure) -> Registration.Response {
        var tls = TLSConfiguration.makeClientConfiguration()
        do {
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8)))
        } catch {
            throw Failure(code: "unreachable", description: "the relay's CA is unreadable: \(error)")
        }
        let body: Data
        do { body = try JSONEncoder().encode(request) } catch { throw Failure(code: "bad-request", description: "\(error)") }
        let (status, text) = try await self.request(Registration.registerPath, body: body, tls: tls)
        let data = Data(text.utf8)
        if status == 201, let response = try? JSONDecoder().decode(Registration.Response.self, from: data) {
            return response
        }
        if let refusal = try? JSONDecoder().decode(Registration.Refusal.self, from: data) {
            throw Failure(code: refusal.error, description: "the relay refused the registration: \(refusal.message)")
        }
        throw Failure(code: "unreachable", description: "the relay answered \(status) without an explanation: \(text.prefix(200))")
    }

    private func request(_ path: String, body: Data?, tls: TLSConfiguration) async throws(Failure) -> (status: UInt, body: String) {
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.httpVersion = .http1Only
        if let proxy = self.proxy {
            configuration.proxy = .server(
                host: proxy.host, port: proxy.port, authorization: proxy.username.map { .basic(username: $0, password: proxy.password ?? "") }
            )
        }
        if let serverName = self.serverName {
            // Verify the relay's certificate for serverName while connecting to the relay address.
            configuration.dnsOverride = [serverName: self.relay.host]
        }
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            var request = HTTPClientRequest(url: self.baseURL + path)
            if let body {
                request.method = .POST
                request.headers.add(name: "Content-Type", value: "application/json")
                request.body = .bytes(ByteBuffer(data: body))
            }
            let response = try await client.execute(request, timeout: .seconds(20))
            let buffer = try await response.body.collect(upTo: 1 << 20)
            try? await client.shutdown()
            return (response.status.code, String(buffer: buffer))
        } catch let failure as Failure {
            try? await client.shutdown()
            throw failure
        } catch {
            try? await client.shutdown()
            // Through a proxy: ask it once more as the running connector does, for its answer in words (a 401 from
            // tinyproxy, a 403, a proxy that cannot resolve the relay) rather than the HTTP client's error name.
            if let proxy = self.proxy, let refusal = await Self.proxyRefusal(relay: self.relay, proxy: proxy) {
                throw Failure(code: "proxy", description: "\(refusal); nothing was sent to the relay or written")
            }
            let via = self.proxy.map { " through proxy \($0) (from \($0.source))" } ?? ""
            throw Failure(code: "unreachable", description: "cannot reach the relay's tunnel listener at \(self.relay)\(via): \(error). Check --relay (the relay's tunnel address, e.g. relay.example.com:8443) and that this host may connect out to it\(self.proxy == nil ? "" : " through the proxy")")
        }
    }
}
