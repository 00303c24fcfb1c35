import Foundation
import SallyportTesting

/// Sallyport as shipped (access logs on, the relay's metrics listener on, log level info): a relay, a connector
/// in group `default` that runs the benchmark plugin in its plugin host, and a second connector in group
/// `inprocess` that runs the same plugin in process. With the Kerberos test bed, the first connector also does
/// KCD to the test bed's Apache.
struct SallyportSetup {
    static let issuer = "https://issuer.bench"
    static let audience = "sallyport-bench"

    let deployment: Deployment
    let issuer: TestIssuer
    let relay: ChildProcess
    let connector: ChildProcess
    /// Resident memory of each, right after they started and took their configuration.
    let idle: (relay: Int, connector: Int)

    /// `jwks`: where the token issuer's key set is written for the relay; `kerberos`: the test bed and Apache's
    /// port, when KCD is measured.
    static func start(
        backendPort: Int, plugins: String, jwks: String, kerberos: (bed: KerberosTestBed, apachePort: Int)?
    ) async throws -> SallyportSetup {
        let issuer = try TestIssuer(issuer: Self.issuer, jwksFile: jwks)
        let deployment = try Deployment(
            hosts: ["pass", "jwt", "plugin", "inprocess", "apache", "kcd"],
            relayExtra: "identityProviders:\n  bench:\n    type: jwt\n    issuers:\n      - issuer: \(Self.issuer)\n        jwksFile: \(jwks)\n    audiences: [\(Self.audience)]"
        )
        let backend = "http://127.0.0.1:\(backendPort)/"
        let jwt = ["preAuthentication:", "  method: jwt", "  provider: bench"]
        try deployment.writeApp(name: "pass", internalURL: backend)
        try deployment.writeApp(
            name: "jwt", internalURL: backend,
            auth: jwt + ["sso:", "  handler: header", "  headers:", "    X-Remote-User: \"{upn}\"", "    X-Remote-Groups: \"{groups}\""]
        )
        try deployment.writeApp(name: "plugin", internalURL: backend, auth: ["preAuthentication: passthrough", "sso:", "  handler: faulty", "  label: bench"])
        try deployment.writeApp(
            name: "inprocess", internalURL: backend, group: "inprocess",
            auth: ["preAuthentication: passthrough", "sso:", "  handler: faulty", "  label: bench"]
        )
        var kerberosSection = ""
        var environment: [String: String]?
        if let kerberos {
            let apache = "http://127.0.0.1:\(kerberos.apachePort)/"
            try deployment.writeApp(name: "apache", internalURL: apache, auth: jwt + ["sso:", "  handler: passthrough"])
            try deployment.writeApp(name: "kcd", internalURL: apache, auth: jwt + ["sso:", "  handler: kcd", "  spn: HTTP/app.corp.example.test"])
            kerberosSection = """
                kerberos:
                  keytab: \(kerberos.bed["CONNECTOR_KEYTAB"] ?? "")
                  principal: \(kerberos.bed["CONNECTOR_PRINCIPAL"] ?? "")
                  allowedSPNs: [HTTP/*.corp.example.test]
                """
            environment = ["KRB5_CONFIG": kerberos.bed["KRB5_CONFIG"] ?? ""]
        }
        do {
            try await deployment.startRelay()
            let connector = try await deployment.startConnector(plugins: plugins, extra: kerberosSection, environment: environment)
            _ = try await deployment.startConnector(name: "connector-inprocess", group: "inprocess", extra: "plugins:\n  directory: \(plugins)\n  inProcess: [libFaultySSO.so]")
            let relay = try deployment.relay.orThrow("the relay is not running")
            // Let the plugin host start and both settle before their memory counts as idle.
            try await Task.sleep(for: .seconds(2))
            return SallyportSetup(
                deployment: deployment, issuer: issuer, relay: relay, connector: connector,
                idle: (try relay.residentMemory(), try connector.residentMemory())
            )
        } catch {
            await deployment.shutdown()
            throw error
        }
    }

    /// A target on the relay's public listener for app `host`.
    func target(_ host: String, path: String, headers: [String] = []) -> Target {
        Target(port: self.deployment.publicPort, host: "\(host).localhost", path: path, headers: headers)
    }

    /// A bearer token for `user` valid for two hours.
    func bearer(user: String = "alice@corp.example.test") async throws -> String {
        "Authorization: Bearer " + (try await self.issuer.token(user: user, audience: Self.audience, expiresIn: 7200))
    }

    func stop() async { await self.deployment.shutdown() }
}

extension Optional {
    func orThrow(_ message: String) throws -> Wrapped {
        guard let self else { throw BenchError(message) }
        return self
    }
}
