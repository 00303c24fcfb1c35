public import Foundation
public import SallyportPKI

/// A real relay and real connectors, each its own `sallyport` process, with throwaway certificates, on
/// loopback. The building block of every end-to-end test.
///
/// Set `SALLYPORT_BINARY` to test another build (for example a release build) of `sallyport`.
public final class Deployment: @unchecked Sendable {
    /// Scratch space: certificates, configs, app files, logs.
    public let directory: TestDirectory
    /// The throwaway certificates.
    public let pki: ThrowawayPKI
    /// The relay's public HTTPS port.
    public let publicPort: Int
    /// The relay's tunnel port.
    public let tunnelPort: Int
    /// Connectors dial the public port (`tunnel.onPublicPort`, as `localhost`), not a tunnel listener.
    public let tunnelOnPublicPort: Bool
    /// The address connectors dial: `localhost` (or ``tunnelHost``) and the tunnel or public port.
    public var connectorRelayAddress: String {
        if let dialAddress = self.dialAddress { return dialAddress }
        return self.tunnelOnPublicPort
            ? "localhost:\(self.publicPort)" : "\(self.tunnelHost == "127.0.0.1" ? "localhost" : self.tunnelHost):\(self.tunnelPort)"
    }
    /// The relay's admin listener (metrics, readiness, status page), on 127.0.0.1.
    public let adminPort: Int
    /// The address the relay's tunnel listens on and connectors dial: loopback, or the host end of a
    /// ``NetworkNamespace`` so that connectors inside one reach it.
    public let tunnelHost: String
    /// What connectors dial instead of this relay's own address (a load balancer in front of several relays).
    public var dialAddress: String?
    /// The relay process, while running.
    public private(set) var relay: ChildProcess?
    /// Connector processes by name.
    public private(set) var connectors: [String: ChildProcess] = [:]
    /// The `sallyport` executable under test.
    public let binary: String

    /// The apps directory the relay watches.
    public var appsDirectory: String { self.directory.file("apps") }
    /// CA file for curl's `--cacert`.
    public var caFile: String { self.pki.publicCA }

    /// Prepares a deployment whose public certificate covers `hosts` (short names: "app" means "app.localhost").
    /// `limits` is YAML placed under `public.limits` (indented by the caller's lines as `key: value`);
    /// `relayExtra` is appended at the top level of the relay file; `connectors` are lines under its `connectors`
    /// section (e.g. `certificateLifetime: 20s`).
    /// `extraCertificates` are further public certificates, each served for its `hosts` (full names) by SNI.
    /// `sharing` another relay's certificates (public, tunnel, connector CA) makes this one a relay of the same
    /// service (see ``Cluster``); `announceTunnelAddress` writes `tunnel.address` (`localhost:PORT`), which such
    /// a relay tells connectors to dial.
    public init(
        hosts: [String],
        limits: [String] = [],
        reloadInterval: String = "500ms",
        extraCertificates: [(hosts: [String], certificate: String, key: String)] = [],
        relayExtra: String = "",
        connectors: [String] = [],
        drainTimeout: String = "20s",
        tunnelHost: String = "127.0.0.1",
        tunnelOnPublicPort: Bool = false,
        sharing shared: ThrowawayPKI? = nil,
        announceTunnelAddress: Bool = false
    ) throws {
        self.directory = try TestDirectory(prefix: "sallyport-e2e")
        self.tunnelHost = tunnelHost
        self.tunnelOnPublicPort = tunnelOnPublicPort
        self.pki = try shared
            ?? ThrowawayPKI.write(to: self.directory.file("pki"), extraPublicNames: hosts.map { "\($0).localhost" }, extraTunnelAddresses: [tunnelHost])
        self.publicPort = try FreePort.next()
        self.tunnelPort = try FreePort.next()
        self.adminPort = try FreePort.next()
        self.binary = try ProcessInfo.processInfo.environment["SALLYPORT_BINARY"] ?? BuiltProduct.path("sallyport")
        try FileManager.default.createDirectory(atPath: self.appsDirectory, withIntermediateDirectories: true)
        _ = try self.directory.write(
            "relay.yaml",
            """
            public:
              listen: 127.0.0.1:\(self.publicPort)
              certificates:
                - certificate: \(self.pki.publicCertificate)
                  key: \(self.pki.publicKey)
            \(extraCertificates.map { "    - hosts: [\($0.hosts.map { "\"\($0)\"" }.joined(separator: ", "))]\n      certificate: \($0.certificate)\n      key: \($0.key)" }.joined(separator: "\n"))
            \(limits.isEmpty ? "" : "  limits:\n" + limits.map { "    " + $0 }.joined(separator: "\n"))
            tunnel:
            \(tunnelOnPublicPort ? "  onPublicPort: true\n  address: localhost:\(self.publicPort)" : "  listen: \(tunnelHost):\(self.tunnelPort)")
            \(announceTunnelAddress ? "  address: localhost:\(self.tunnelPort)" : "")
              certificate: \(self.pki.tunnelCertificate)
              key: \(self.pki.tunnelKey)
            connectors:
              ca:
                certificate: \(self.pki.tunnelCA)
                key: \(self.pki.tunnelCAKey)
            \(connectors.map { "  " + $0 }.joined(separator: "\n"))
            state: \(self.directory.file("state"))
            apps: \(self.appsDirectory)
            reloadInterval: \(reloadInterval)
            drainTimeout: \(drainTimeout)
            admin:
              listen: 127.0.0.1:\(self.adminPort)
            \(relayExtra)
            """
        )
    }

    deinit {
        self.relay?.signal(SIGKILL)
        for connector in self.connectors.values { connector.signal(SIGKILL) }
    }

    /// A URL on the relay's admin listener.
    public func adminURL(_ path: String) -> String {
        "http://127.0.0.1:\(self.adminPort)\(path)"
    }

    /// The public URL of `host` ("app" → https://app.localhost:PORT/...).
    public func url(_ host: String, _ path: String = "/") -> String {
        "https://\(host).localhost:\(self.publicPort)\(path)"
    }

    /// Writes (or rewrites) an app file `apps/NAME.yaml`.
    /// `auth` is the app's `preAuthentication` and `sso` keys as YAML lines (default: passthrough both);
    /// `prefix` the external URL's path (`/hr/` publishes `https://HOST.localhost/hr/`).
    @discardableResult
    public func writeApp(
        name: String,
        host: String? = nil,
        prefix: String = "/",
        internalURL: String,
        group: String = "default",
        auth: [String] = ["preAuthentication: passthrough", "sso:", "  handler: passthrough"],
        extra: String = ""
    ) throws -> String {
        try self.directory.write(
            "apps/\(name).yaml",
            """
            name: \(name)
            externalURL: https://\(host ?? name).localhost\(prefix)
            internalURL: \(internalURL)
            connectorGroup: \(group)
            \(auth.joined(separator: "\n"))
            \(extra)
            """
        )
    }

    /// Starts the relay and waits until it listens. `logLevel`: `debug` to see everything it logs.
    /// `launcher` goes before the command (a socket unit's stand-in that runs the relay, say).
    public func startRelay(
        logLevel: String = "info", logFormat: String = "text", environment: [String: String]? = nil, launcher: [String] = []
    ) async throws {
        let log = self.directory.file("relay-\(Int(Date().timeIntervalSince1970 * 1000)).log")
        let command = launcher + [self.binary, "relay", "--config", self.directory.file("relay.yaml"), "--log-level", logLevel, "--log-format", logFormat]
        let process = try ChildProcess.launch(command[0], Array(command.dropFirst()), environment: environment, logFile: log)
        self.relay = process
        try await process.waitForLog(containing: "relay listening", timeout: .seconds(30))
    }

    /// Stops the relay with SIGTERM and waits for it to exit; returns its exit status.
    @discardableResult
    public func stopRelay(signal: Int32 = SIGTERM, timeout: Duration = .seconds(30)) async -> Int32? {
        guard let relay = self.relay else { return nil }
        relay.signal(signal)
        let status = await relay.waitForExit(timeout: timeout)
        self.relay = nil
        return status
    }

    /// Starts a connector of `group` and waits until it has the relay's configuration.
    /// A connector registered the way an administrator does it: `sallyport connectors token create` on the relay,
    /// then `sallyport connector register` into `DIR/NAME/`. The first start of a name registers it (in
    /// `group`); later starts reuse its files. `certificate` instead uses a given certificate and key without
    /// registering (negative tests). `extra` is YAML appended to its config file (e.g. a `kerberos:` section);
    /// `environment` adds to its environment.
    @discardableResult
    public func startConnector(
        name: String = "connector-1",
        group: String = "default",
        connections: Int = 2,
        certificate override: (certificate: String, key: String)? = nil,
        plugins: String? = nil,
        extra: String = "",
        environment: [String: String]? = nil,
        waitForConfiguration: Bool = true,
        logLevel: String = "info",
        namespace: NetworkNamespace? = nil
    ) async throws -> ChildProcess {
        let base: String
        if let override {
            base = """
                relay: \(self.connectorRelayAddress)
                name: \(name)
                certificate: \(override.certificate)
                key: \(override.key)
                relayCA: \(self.pki.tunnelCA)
                """
        } else {
            base = try await self.registration(name: name, group: group)
        }
        let file = try self.directory.write(
            "\(name)/connector-run.yaml",
            """
            \(base)
            connections: \(connections)
            \(plugins.map { "plugins: \($0)" } ?? "")
            \(extra)
            """
        )
        let command = (executable: self.binary, arguments: ["connector", "--config", file, "--log-level", logLevel])
        let launched = namespace?.command(command.executable, command.arguments) ?? command
        let process = try ChildProcess.launch(
            launched.executable, launched.arguments, environment: environment, logFile: self.directory.file("\(name).log")
        )
        self.connectors[name] = process
        if waitForConfiguration {
            try await process.waitForLog(containing: "configuration applied", timeout: .seconds(30))
        }
        return process
    }

    /// The connector.yaml of `name`, registering it first if it has none (the relay must be running).
    public func registration(name: String, group: String = "default") async throws -> String {
        let file = self.directory.file("\(name)/connector.yaml")
        if !FileManager.default.fileExists(atPath: file) {
            let token = try await self.createToken(group: group)
            _ = try await self.sallyport(["connector", "register", "--relay", self.connectorRelayAddress, "--token", token, "--name", name, "--directory", self.directory.file(name)])
        }
        // Paths in the written file are relative to its directory, as is the run file beside it.
        return try String(contentsOfFile: file, encoding: .utf8)
    }

    /// A registration token for `group` from the running relay's admin API, through the CLI.
    public func createToken(group: String, expires: String = "10m", uses: Int = 1) async throws -> String {
        let output = try await self.sallyport(
            ["connectors", "token", "create", "--group", group, "--expires", expires, "--uses", "\(uses)", "--json", "--config", self.directory.file("relay.yaml")]
        )
        guard let data = output.data(using: .utf8), let object = try JSONSerialization.jsonObject(with: data) as? [String: Any], let token = object["token"] as? String
        else { throw HarnessError(.commandFailed, "token create printed no token: \(output)") }
        return token
    }

    /// Runs `sallyport ARGS` to completion; returns its output, throws if it failed.
    @discardableResult
    public func sallyport(_ arguments: [String], expectFailure: Bool = false) async throws -> String {
        let log = self.directory.file("cli-\(UUID().uuidString.prefix(8)).log")
        let process = try ChildProcess.launch(self.binary, arguments, logFile: log)
        let status = await process.waitForExit(timeout: .seconds(60))
        let output = process.log()
        if (status == 0) == expectFailure {
            throw HarnessError(.commandFailed, "sallyport \(arguments.joined(separator: " ")) exited \(status.map(String.init) ?? "by timeout"): \(output)")
        }
        return output
    }

    /// The config file a connector started by ``startConnector(name:group:connections:certificate:plugins:extra:environment:waitForConfiguration:logLevel:)`` runs with.
    public func connectorConfig(_ name: String = "connector-1") -> String { self.directory.file("\(name)/connector-run.yaml") }

    /// The admin socket of the relay.
    public var adminSocket: String { self.directory.file("state/admin.sock") }

    /// Stops one connector.
    public func stopConnector(_ name: String, signal: Int32 = SIGTERM) async {
        guard let process = self.connectors.removeValue(forKey: name) else { return }
        process.signal(signal)
        _ = await process.waitForExit(timeout: .seconds(30))
    }

    /// Stops everything and removes the scratch directory (kept with SALLYPORT_KEEP_TEST_DIRS=1).
    public func shutdown() async {
        for name in Array(self.connectors.keys) { await self.stopConnector(name) }
        await self.stopRelay()
        self.directory.remove()
    }
}
