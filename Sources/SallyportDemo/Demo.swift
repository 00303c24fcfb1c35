import Foundation
import JWTKit
public import Logging
import NIOCore
import NIOPosix
import SallyportConfig
import SallyportConnector
import SallyportRelay
import SallyportTunnel
import SallyportWire
public import ServiceLifecycle
import Synchronization

/// `sallyport demo`: a relay, a connector and a sample app in one process, set up the way an administrator
/// does it: `relay init`, a registration token, `connector register`. Both steps are printed as the commands
/// they stand for. Two apps: `hello` (passthrough) and `whoami` (a trusted JWT at the relay, identity headers
/// from the connector), with a demo token so single sign-on is visible in the first minute.
public struct Demo: Service {
    /// Public HTTPS port of the relay.
    public var publicPort: Int
    /// Where the relay's and the connector's files go; a fresh temporary directory when nil.
    public var directory: String?
    let logger: Logger

    /// Creates the demo.
    public init(publicPort: Int = 8443, directory: String? = nil, logger: Logger) {
        self.publicPort = publicPort
        self.directory = directory
        self.logger = logger
    }

    struct DemoClaims: JWTPayload {
        var iss: String
        var sub: String
        var aud: [String]
        var exp: Int
        var upn: String
        var name: String
        var groups: [String]
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    static let issuer = "https://demo-issuer.sallyport.invalid"

    /// Runs until graceful shutdown (SIGINT or SIGTERM).
    public func run() async throws {
        let logger = self.logger
        let directory = try self.directory ?? Self.makeTemporaryDirectory()
        let relayDirectory = (directory as NSString).appendingPathComponent("relay")
        let connectorDirectory = (directory as NSString).appendingPathComponent("connector")

        // Step 1, as `sallyport relay init`.
        let hosts = ["hello.localhost", "whoami.localhost", "localhost", "127.0.0.1"]
        let initialised: RelayInit.Outcome
        do {
            initialised = try RelayInit(
                directory: relayDirectory, tunnelNames: ["localhost", "127.0.0.1"], publicListen: "127.0.0.1:\(self.publicPort)",
                tunnelListen: "127.0.0.1:0", trialPublicNames: hosts
            ).run()
        } catch {
            throw DemoError(description: "\(error)")
        }
        logger.notice(
            "step 1: relay initialised",
            metadata: ["command": "sallyport relay init \(relayDirectory) --name localhost --name 127.0.0.1 --public-listen 127.0.0.1:\(self.publicPort) --tunnel-listen 127.0.0.1:0 \(hosts.map { "--trial-host \($0)" }.joined(separator: " "))"]
        )
        let publicCA = initialised.trialPublicCA ?? ""

        // The demo's identity provider: a key of its own, published as a JWKS file the relay reads.
        let signingKey = ES256PrivateKey()
        let parameters = signingKey.publicKey.parameters!
        let jwksFile = (relayDirectory as NSString).appendingPathComponent("demo-jwks.json")
        try #"{"keys":[{"kty":"EC","crv":"P-256","use":"sig","alg":"ES256","kid":"demo","x":"\#(parameters.x)","y":"\#(parameters.y)"}]}"#
            .write(toFile: jwksFile, atomically: true, encoding: .utf8)
        let relayFile = initialised.configFile
        let extra = """
            reloadInterval: 1s
            drainTimeout: 5s
            identityProviders:
              demo:
                type: jwt
                issuers:
                  - issuer: \(Self.issuer)
                    jwksFile: demo-jwks.json
                audiences: [sallyport-demo]

            """
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: relayFile))
        handle.seekToEndOfFile()
        handle.write(Data(extra.utf8))
        try handle.close()

        // The sample app comes up first so its port can go into the app files.
        let backendReady = AsyncStream<Int>.makeStream()
        let backend = SampleBackend(logger: logger) { port in
            backendReady.continuation.yield(port)
            backendReady.continuation.finish()
        }
        let relayConfig = try ConfigLoader.loadRelay(file: relayFile)
        let ready = AsyncStream<Int>.makeStream()
        let relay = RelayService(config: relayConfig, logger: logger) { _, tunnelPort in
            ready.continuation.yield(tunnelPort)
            ready.continuation.finish()
        }
        let demoToken = try await Self.token(signingKey)

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                var iterator = backendReady.stream.makeAsyncIterator()
                guard let port = await iterator.next() else { return }
                try Self.writeApps(directory: relayConfig.appsDirectory, backendPort: port, publicPort: self.publicPort)
                var tunnelPorts = ready.stream.makeAsyncIterator()
                guard let tunnelPort = await tunnelPorts.next() else { return }
                relay.catalog.reload()

                // Step 2, as `sallyport connectors token create` on the relay, then `sallyport connector register`.
                let admin = AdminClient(socket: relayConfig.adminSocket)
                let token = try await admin.createToken(group: "default", expires: "10m")
                let parsed = try RegistrationToken(parsing: token.token)
                logger.notice("step 2: registration token created", metadata: ["command": "sallyport connectors token create --group default --config \(relayFile)"])
                let registration = RegistrationClient(
                    relay: HostPort(host: "localhost", port: tunnelPort), serverName: nil, token: parsed, name: "demo-connector", group: nil,
                    directory: connectorDirectory, force: true
                )
                let registered = try await registration.run()
                logger.notice(
                    "step 3: connector registered",
                    metadata: [
                        "command": "sallyport connector register --relay localhost:\(tunnelPort) --token sp1.\(parsed.id).… --name demo-connector --directory \(connectorDirectory)",
                        "id": "\(registered.connectorID)", "group": "\(registered.group)",
                    ]
                )
                let connector = ConnectorService(config: try ConfigLoader.loadConnector(file: registered.configFile), logger: logger)
                // Wait until the connector holds the apps, then tell the user.
                let announce = Task {
                    while connector.apps.app(named: "hello") == nil || connector.apps.app(named: "whoami") == nil {
                        try await Task.sleep(for: .milliseconds(50))
                    }
                    Self.say(
                        """

                        Sallyport demo is running.
                          App:      https://hello.localhost:\(self.publicPort)/
                          Try:      curl --cacert \(publicCA) https://hello.localhost:\(self.publicPort)/
                          SSO:      curl --cacert \(publicCA) -H 'Authorization: Bearer \(demoToken)' https://whoami.localhost:\(self.publicPort)/
                                    (the relay checks the token; the connector tells the app who you are in X-Remote-User)
                          Files:    \(directory)  (edit relay/apps/*.yaml: the relay reloads them)
                          Status:   sallyport connectors list --config \(relayFile)
                          Stop:     Ctrl-C

                        """
                    )
                }
                defer { announce.cancel() }
                // Ends with the connector (which drains first on shutdown).
                let renewal = Task { try await connector.kerberosRenewal.run() }
                defer { renewal.cancel() }
                try await connector.run()
            }
            group.addTask { try await backend.run() }
            group.addTask {
                // Ends with the relay (which drains first on shutdown).
                let reload = Task { try await relay.appReload.run() }
                defer { reload.cancel() }
                try await relay.run()
            }
            try await group.next()
            group.cancelAll()
        }
    }

    /// A day-long token for the demo user, signed with the demo provider's key.
    static func token(_ key: ES256PrivateKey) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(ecdsa: key, kid: "demo")
        let claims = DemoClaims(
            iss: Self.issuer, sub: "alice", aud: ["sallyport-demo"], exp: Int(Date().timeIntervalSince1970) + 86400,
            upn: "alice@demo.example", name: "Alice Example", groups: ["staff"]
        )
        return try await keys.sign(claims, kid: "demo")
    }

    static func writeApps(directory: String, backendPort: Int, publicPort: Int) throws {
        try """
            # Written by `sallyport demo`: the sample app, published at https://hello.localhost:\(publicPort)/
            name: hello
            externalURL: https://hello.localhost:\(publicPort)/
            internalURL: http://127.0.0.1:\(backendPort)/
            connectorGroup: default
            preAuthentication: passthrough
            sso:
              handler: passthrough

            """.write(toFile: (directory as NSString).appendingPathComponent("hello.yaml"), atomically: true, encoding: .utf8)
        try """
            # Written by `sallyport demo`: the same sample app behind a trusted JWT (the relay lets in only valid
            # tokens of the demo provider) and the header handler (the connector names the user to the app).
            name: whoami
            externalURL: https://whoami.localhost:\(publicPort)/
            internalURL: http://127.0.0.1:\(backendPort)/
            connectorGroup: default
            preAuthentication:
              method: jwt
              provider: demo
            sso:
              handler: header
              headers:
                X-Remote-User: "{upn}"
                X-Remote-Name: "{name}"

            """.write(toFile: (directory as NSString).appendingPathComponent("whoami.yaml"), atomically: true, encoding: .utf8)
    }

    /// Prints to standard output right away (it may be a pipe).
    static func say(_ text: String) {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    static func makeTemporaryDirectory() throws -> String {
        let path = (NSTemporaryDirectory() as NSString).appendingPathComponent("sallyport-demo-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}

/// The demo could not set itself up.
struct DemoError: Error, CustomStringConvertible {
    var description: String
}
