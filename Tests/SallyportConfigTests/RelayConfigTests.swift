import Foundation
import SallyportConfig
import Testing

/// A relay config with relative and absolute paths. Lines: public 1, listen 2, certificates 3, first entry 4–6,
/// tunnel 7, listen 8, certificate 9, key 10, address 11, apps 12.
private let minimalRelay = """
    public:
      listen: 0.0.0.0:443
      certificates:
        - hosts: ["*.Apps.Example.com", apps.example.com]
          certificate: tls/apps.pem
          key: /etc/sallyport/apps.key
    tunnel:
      listen: "[::]:8443"
      certificate: tls/tunnel.pem
      key: ./tls/tunnel.key
      address: relay.example.com:8443
    apps: apps

    """

@Suite("Relay config")
struct RelayConfigTests {
    private func load(_ yaml: String) throws -> (RelayConfig, TemporaryDirectory) {
        let directory = try TemporaryDirectory()
        let file = try directory.write("relay.yaml", yaml)
        do {
            return (try ConfigLoader.loadRelay(file: file), directory)
        } catch {
            directory.remove()
            throw error
        }
    }

    private func relayError(_ yaml: String) throws -> ConfigError? {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let file = try directory.write("relay.yaml", yaml)
        do {
            _ = try ConfigLoader.loadRelay(file: file)
            return nil
        } catch {
            #expect(error.file == file)
            return error
        }
    }

    @Test func identityProvidersAndSessions() throws {
        let yaml = minimalRelay + """
            identityProviders:
              corp:
                type: oidc
                issuer: https://login.example.com/tenant/v2.0
                clientID: sallyport
                clientSecretFile: secrets/oidc
                claims:
                  userPrincipalName: preferred_username
                  keep: [department]
              gateway:
                type: jwt
                issuers:
                  - issuer: https://cloud.google.com/iap
                    jwksURL: https://www.gstatic.com/iap/verify/public_key-jwk
                audiences: ["/projects/1/apps/2"]
                token:
                  header: X-Goog-IAP-JWT-Assertion
                algorithms: [ES256]
            sessions:
              lifetime: 4h
              idleTimeout: 30m

            """
        let (relay, directory) = try load(yaml)
        defer { directory.remove() }
        #expect(relay.identityProviders.map(\.name) == ["corp", "gateway"])
        #expect(relay.identityProviders.map(\.method) == [.oidc, .jwt])
        let corp = try #require(relay.identityProviders.first)
        guard case .oidc(let oidc) = corp.kind else { Issue.record("corp is not oidc"); return }
        #expect(oidc.clientSecretFile == "\(directory.path)/secrets/oidc")
        #expect(oidc.scopes == ["openid", "profile", "email"])
        #expect(corp.claims.userPrincipalName == ["preferred_username"])
        #expect(corp.claims.keep == ["department"])
        guard case .jwt(let jwt) = relay.identityProviders[1].kind else { Issue.record("gateway is not jwt"); return }
        #expect(jwt.token == .header("X-Goog-IAP-JWT-Assertion"))
        #expect(relay.identityProviders[1].algorithms == ["ES256"])
        #expect(corp.algorithms == nil, "by key when left out")
        #expect(jwt.issuers.first?.keys == .url("https://www.gstatic.com/iap/verify/public_key-jwk"))
        #expect(relay.sessions.lifetime == .seconds(4 * 3600))
        #expect(relay.sessions.idleTimeout == .seconds(1800))
    }

    @Test func identityProviderMistakesNameTheirKey() throws {
        let plainHTTP = try #require(
            try relayError(minimalRelay + "identityProviders:\n  corp:\n    type: oidc\n    issuer: http://login.example.com\n    clientID: x\n    clientSecretFile: s\n")
        )
        #expect(plainHTTP.key == "identityProviders.corp.issuer")
        #expect(plainHTTP.line == 16)
        #expect(plainHTTP.message.contains("must use https://"))

        let jwtKeyOnOIDC = try #require(
            try relayError(minimalRelay + "identityProviders:\n  corp:\n    type: oidc\n    issuer: https://l.example.com\n    clientID: x\n    clientSecretFile: s\n    audiences: [a]\n")
        )
        #expect(jwtKeyOnOIDC.key == "identityProviders.corp.audiences")
        #expect(jwtKeyOnOIDC.message.hasPrefix("unknown key"))

        let noKeys = try #require(
            try relayError(minimalRelay + "identityProviders:\n  api:\n    type: jwt\n    issuers:\n      - issuer: https://i.example.com\n    audiences: [a]\n")
        )
        #expect(noKeys.key == "identityProviders.api.issuers[0].jwksURL")
        #expect(noKeys.message.contains("set jwksURL"))

        let noneAlgorithm = try #require(
            try relayError(
                minimalRelay + "identityProviders:\n  corp:\n    type: oidc\n    issuer: https://l.example.com\n    clientID: x\n    clientSecretFile: s\n    algorithms: [RS256, none]\n"
            )
        )
        #expect(noneAlgorithm.key == "identityProviders.corp.algorithms[1]")
        #expect(noneAlgorithm.message.hasPrefix("must be one of RS256"))

        let badType = try #require(try relayError(minimalRelay + "identityProviders:\n  corp:\n    type: saml\n"))
        #expect(badType.key == "identityProviders.corp.type")

        let twice = try #require(
            try relayError(
                minimalRelay
                    + "identityProviders:\n  api:\n    type: jwt\n    issuers:\n      - issuer: https://i\n        jwksFile: a\n      - issuer: https://i\n        jwksFile: b\n    audiences: [a]\n"
            )
        )
        #expect(twice.key == "identityProviders.api.issuers[1]")
        #expect(twice.message.contains("listed twice"))

        let noClaims = try #require(
            try relayError(
                minimalRelay + "identityProviders:\n  corp:\n    type: oidc\n    issuer: https://l.example.com\n    clientID: x\n    clientSecretFile: s\n    claims:\n      userPrincipalName: []\n"
            )
        )
        #expect(noClaims.key == "identityProviders.corp.claims.userPrincipalName")

        let idleTooLong = try #require(try relayError(minimalRelay + "sessions:\n  lifetime: 1h\n  idleTimeout: 2h\n"))
        #expect(idleTooLong.key == "sessions.idleTimeout")
        #expect(idleTooLong.line == 15)
    }

    @Test func relativePathsResolveAgainstTheFileAndDefaultsApply() throws {
        let (relay, directory) = try load(minimalRelay)
        defer { directory.remove() }
        let base = directory.path
        #expect(relay.file == "\(base)/relay.yaml")
        #expect(relay.publicListen == HostPort(host: "0.0.0.0", port: 443))
        #expect(
            relay.publicCertificates == [
                CertificateConfig(
                    hosts: ["*.apps.example.com", "apps.example.com"],
                    certificate: "\(base)/tls/apps.pem",
                    key: "/etc/sallyport/apps.key"
                )
            ]
        )
        #expect(
            relay.limits
                == EdgeLimits(
                    maxHeaderBytes: 32768, maxHeaderCount: 100, maxRequestLineBytes: 8192, headerReadTimeout: .seconds(10), idleTimeout: .seconds(75))
        )
        #expect(relay.tunnelListen == HostPort(host: "::", port: 8443))
        #expect(relay.tunnelCertificate == "\(base)/tls/tunnel.pem")
        #expect(relay.tunnelKey == "\(base)/tls/tunnel.key")
        #expect(relay.tunnelAddress == HostPort(host: "relay.example.com", port: 8443))
        #expect(relay.stateDirectory == "\(base)/state")
        #expect(relay.adminSocket == "\(base)/state/admin.sock")
        #expect(relay.connectors == ConnectorPolicy())
        #expect(relay.appsDirectory == "\(base)/apps")
        #expect(relay.reloadInterval == .seconds(2))
        #expect(relay.drainTimeout == .seconds(30))
    }

    @Test func everyOptionalKey() throws {
        let yaml = """
            public:
              listen: 127.0.0.1:0
              certificates:
                - hosts: [apps.example.com]
                  certificate: apps.pem
                  key: apps.key
                - certificate: /etc/default.pem
                  key: /etc/default.key
              limits:
                maxHeaderBytes: 65536
                maxHeaderCount: 50
                maxRequestLineBytes: 4096
                headerReadTimeout: 5s
                idleTimeout: 2m
                bodyReadTimeout: 20s
                minBodyRate: 0
                sendTimeout: 90s
                maxConnections: 2000
                maxConnectionsPerClient: 64
            tunnel:
              listen: 127.0.0.1:0
              certificate: /etc/tunnel.pem
              key: /etc/tunnel.key
            state: /var/lib/sallyport
            admin:
              socket: /run/sallyport/admin.sock
            connectors:
              ca:
                certificate: ca/connectors-ca.pem
                key: ca/connectors-ca.key
              certificateLifetime: 7d
              inactiveAfter: 2m
              removeAfter: 30d
              trustedCAs: [own-ca.pem]
            apps: /srv/sallyport/apps
            reloadInterval: 500ms
            drainTimeout: 0s

            """
        let (relay, directory) = try load(yaml)
        defer { directory.remove() }
        #expect(relay.publicListen == HostPort(host: "127.0.0.1", port: 0))
        #expect(relay.tunnelListen == HostPort(host: "127.0.0.1", port: 0))
        #expect(
            relay.limits
                == EdgeLimits(
                    maxHeaderBytes: 65536,
                    maxHeaderCount: 50,
                    maxRequestLineBytes: 4096,
                    headerReadTimeout: .seconds(5),
                    idleTimeout: .seconds(120),
                    bodyReadTimeout: .seconds(20),
                    minBodyRate: 0,
                    sendTimeout: .seconds(90),
                    maxConnections: 2000,
                    maxConnectionsPerClient: 64
                )
        )
        #expect(
            relay.publicCertificates == [
                CertificateConfig(hosts: ["apps.example.com"], certificate: "\(directory.path)/apps.pem", key: "\(directory.path)/apps.key"),
                CertificateConfig(hosts: [], certificate: "/etc/default.pem", key: "/etc/default.key"),
            ]
        )
        #expect(relay.appsDirectory == "/srv/sallyport/apps")
        #expect(relay.stateDirectory == "/var/lib/sallyport")
        #expect(relay.adminSocket == "/run/sallyport/admin.sock")
        #expect(
            relay.connectors
                == ConnectorPolicy(
                    caCertificate: "\(directory.path)/ca/connectors-ca.pem", caKey: "\(directory.path)/ca/connectors-ca.key",
                    certificateLifetime: .seconds(7 * 86400), inactiveAfter: .seconds(120), removeAfter: .seconds(30 * 86400),
                    trustedCAs: ["\(directory.path)/own-ca.pem"]
                )
        )
        #expect(relay.reloadInterval == .milliseconds(500))
        #expect(relay.drainTimeout == .zero)
    }

    @Test func missingFileIsReported() {
        #expect(throws: ConfigError(file: "/nonexistent/relay.yaml", message: "file not found")) {
            try ConfigLoader.loadRelay(file: "/nonexistent/relay.yaml")
        }
    }

    @Test func missingSectionKeyIsReportedAtTheSection() throws {
        let yaml = minimalRelay.replacingOccurrences(of: "  key: ./tls/tunnel.key\n", with: "")
        let error = try #require(try relayError(yaml))
        #expect(error.line == 7)
        #expect(error.column == 1)
        #expect(error.key == "tunnel.key")
        #expect(error.message == "required key is missing")
    }

    @Test func theOldClientCAKeySaysWhatReplacedIt() throws {
        let yaml = minimalRelay.replacingOccurrences(of: "  address: relay.example.com:8443\n", with: "  clientCA: tls/connectors-ca.pem\n")
        let error = try #require(try relayError(yaml))
        #expect(error.line == 11)
        #expect(error.key == "tunnel.clientCA")
        #expect(error.message.contains("connectors.ca"))
        #expect(error.message.contains("sallyport relay init"))
        #expect(error.message.contains("connectors.trustedCAs"))
    }

    @Test func certificateLifetimeHasAFloor() throws {
        let yaml = minimalRelay + "connectors:\n  certificateLifetime: 5s\n"
        let error = try #require(try relayError(yaml))
        #expect(error.key == "connectors.certificateLifetime")
        #expect(error.message == "must be at least 10s")
    }

    @Test func storeIsSQLiteByDefaultOrAPostgresDatabase() throws {
        let (plain, plainDirectory) = try load(minimalRelay)
        defer { plainDirectory.remove() }
        #expect(plain.store == .sqlite)

        let (config, directory) = try load(
            minimalRelay + "store:\n  postgres:\n    host: db.example.internal\n    passwordFile: secrets/db\n    caFile: /etc/ssl/db-ca.pem\n"
        )
        defer { directory.remove() }
        #expect(
            config.store
                == .postgres(
                    PostgresConfig(
                        host: "db.example.internal", port: 5432, database: "sallyport", user: "sallyport",
                        passwordFile: directory.path + "/secrets/db", tls: .verifyFull, caFile: "/etc/ssl/db-ca.pem", maxConnections: 10
                    )
                ))

        let (local, localDirectory) = try load(
            minimalRelay + "store:\n  postgres: {host: 127.0.0.1, port: 6432, database: relays, user: relay, tls: disable, maxConnections: 4}\n"
        )
        defer { localDirectory.remove() }
        #expect(local.store == .postgres(PostgresConfig(host: "127.0.0.1", port: 6432, database: "relays", user: "relay", tls: .disable, maxConnections: 4)))
    }

    @Test(arguments: [
        ("store: mysql\n", "store", "must be sqlite (the default) or a mapping with postgres"),
        ("store:\n  postgres:\n    port: 5432\n", "store.postgres.host", "required key is missing"),
        ("store:\n  postgres:\n    host: db\n    password: hunter2\n", "store.postgres.password", "put the password in a file"),
        ("store:\n  postgres:\n    host: db\n    tls: prefer\n", "store.postgres.tls", "must be one of: disable, require, verify-full"),
        ("store:\n  postgres:\n    host: db\n    tls: disable\n    caFile: ca.pem\n", "store.postgres.caFile", "only used with tls: verify-full"),
        ("store:\n  postgres:\n    host: db\n    hots: x\n", "store.postgres.hots", "unknown key"),
        ("store:\n  sqlite:\n    path: x\n", "store.sqlite", "takes no settings"),
    ])
    func storeMistakesNameTheirKey(_ yaml: String, _ key: String, _ message: String) throws {
        let error = try #require(try relayError(minimalRelay + yaml))
        #expect(error.key == key)
        #expect(error.message.contains(message), "\(error.message)")
        #expect(!error.description.contains("hunter2"))
    }

    @Test func aRelaySharingAPostgresStoreNeedsItsOwnTunnelAddress() throws {
        let yaml = minimalRelay.replacingOccurrences(of: "  address: relay.example.com:8443\n", with: "") + "store:\n  postgres:\n    host: db\n"
        let error = try #require(try relayError(yaml))
        #expect(error.key == "tunnel.address")
        #expect(error.message.contains("required with store.postgres"))
        #expect(error.line == 7)
    }

    @Test func unknownKeyInLimits() throws {
        let yaml = minimalRelay.replacingOccurrences(of: "  listen: 0.0.0.0:443\n", with: "  listen: 0.0.0.0:443\n  limits:\n    maxHeaderByte: 1\n")
        let error = try #require(try relayError(yaml))
        #expect(error.line == 4)
        #expect(error.column == 5)
        #expect(error.key == "public.limits.maxHeaderByte")
        #expect(error.message == #"unknown key (did you mean "maxHeaderBytes"?)"#)
    }

    @Test func limitOutOfRange() throws {
        let yaml = minimalRelay.replacingOccurrences(of: "  listen: 0.0.0.0:443\n", with: "  listen: 0.0.0.0:443\n  limits:\n    maxHeaderCount: 0\n")
        let error = try #require(try relayError(yaml))
        #expect(error.line == 4)
        #expect(error.key == "public.limits.maxHeaderCount")
        #expect(error.message == "must be from 8 to 10000 (got 0)")
        let perClient = minimalRelay.replacingOccurrences(of: "  listen: 0.0.0.0:443\n", with: "  listen: 0.0.0.0:443\n  limits:\n    maxConnectionsPerClient: 0\n")
        let perClientError = try #require(try relayError(perClient))
        #expect(perClientError.key == "public.limits.maxConnectionsPerClient")
        #expect(perClientError.message == "must be from 1 to 10000000 (got 0)")
    }

    @Test func certificateErrorsNameTheListItem() throws {
        let badHost = minimalRelay.replacingOccurrences(of: "apps.example.com]", with: "apps example]")
        let hostError = try #require(try relayError(badHost))
        #expect(hostError.line == 4)
        #expect(hostError.key == "public.certificates[0].hosts[1]")
        #expect(hostError.message == #"must be a host name like "apps.example.com" or "*.apps.example.com" (got "apps example")"#)

        let missingKey = minimalRelay.replacingOccurrences(of: "      key: /etc/sallyport/apps.key\n", with: "")
        let keyError = try #require(try relayError(missingKey))
        #expect(
            keyError == ConfigError(file: keyError.file, line: 4, column: 7, key: "public.certificates[0].key", message: "required key is missing"))
    }

    @Test func certificatesMustNotBeEmptyOrClash() throws {
        let empty = minimalRelay.replacingOccurrences(
            of: "  certificates:\n    - hosts: [\"*.Apps.Example.com\", apps.example.com]\n"
                + "      certificate: tls/apps.pem\n      key: /etc/sallyport/apps.key\n",
            with: "  certificates: []\n"
        )
        let emptyError = try #require(try relayError(empty))
        #expect(emptyError.line == 3)
        #expect(emptyError.key == "public.certificates")
        #expect(emptyError.message == "must list at least one certificate")

        let sameHost = minimalRelay.replacingOccurrences(
            of: "      key: /etc/sallyport/apps.key\n",
            with: "      key: /etc/sallyport/apps.key\n    - hosts: [APPS.example.com]\n      certificate: b.pem\n      key: b.key\n"
        )
        let hostError = try #require(try relayError(sameHost))
        #expect(hostError.line == 7)
        #expect(hostError.key == "public.certificates[1].hosts[0]")
        #expect(hostError.message == #""apps.example.com" is already listed in public.certificates[0]; each host may have one certificate"#)

        let twoDefaults = minimalRelay.replacingOccurrences(
            of: "      key: /etc/sallyport/apps.key\n",
            with: "      key: /etc/sallyport/apps.key\n    - certificate: a.pem\n      key: a.key\n    - certificate: b.pem\n      key: b.key\n"
        )
        let defaultError = try #require(try relayError(twoDefaults))
        #expect(defaultError.line == 9)
        #expect(defaultError.key == "public.certificates[2]")
        #expect(defaultError.message.hasPrefix("only one certificate may leave out hosts"))
    }

    @Test func listenAddressErrors() throws {
        let noPort = minimalRelay.replacingOccurrences(of: "listen: 0.0.0.0:443", with: "listen: 0.0.0.0")
        let error = try #require(try relayError(noPort))
        #expect(error.line == 2)
        #expect(error.column == 3)
        #expect(error.key == "public.listen")
        #expect(error.message.contains("the port is missing"))

        let number = minimalRelay.replacingOccurrences(of: "listen: 0.0.0.0:443", with: "listen: 443")
        let numberError = try #require(try relayError(number))
        #expect(numberError.message.hasPrefix("must be a string"))
    }

    @Test func reloadIntervalMustBePositive() throws {
        let error = try #require(try relayError(minimalRelay + "reloadInterval: 0\n"))
        #expect(error.line == 13)
        #expect(error.key == "reloadInterval")
        #expect(error.message == #"must be longer than zero (got "0")"#)
    }

    @Test("tunnel.onPublicPort: tunnel.listen may go; tunnel.address is required and must be a name; every problem of the file is reported at once")
    func tunnelOnPublicPort() throws {
        let shared = minimalRelay.replacingOccurrences(of: "  listen: \"[::]:8443\"\n", with: "  onPublicPort: true\n")
        let (relay, directory) = try self.load(shared)
        defer { directory.remove() }
        #expect(relay.tunnelOnPublicPort && relay.tunnelListen == nil)
        #expect(relay.tunnelAddress == HostPort(host: "relay.example.com", port: 8443))

        let withoutAddress = shared.replacingOccurrences(of: "  address: relay.example.com:8443\n", with: "")
        let missing = try #require(try self.relayError(withoutAddress))
        #expect(missing.key == "tunnel.address" && missing.message.contains("is required with onPublicPort"), "\(missing)")
        let address = shared.replacingOccurrences(of: "relay.example.com:8443", with: "192.0.2.7:443")
        let literal = try #require(try self.relayError(address))
        #expect(literal.key == "tunnel.address" && literal.message.contains("must be a host name"), "\(literal)")
        let neither = minimalRelay.replacingOccurrences(of: "  listen: \"[::]:8443\"\n", with: "")
        #expect(try self.relayError(neither)?.key == "tunnel.listen")

        // Two mistakes: both come back.
        let directory2 = try TemporaryDirectory()
        defer { directory2.remove() }
        let file = try directory2.write("relay.yaml", address.replacingOccurrences(of: "apps: apps", with: "apps: apps\nreloadInterval: soon"))
        guard case .failure(let problems) = ConfigLoader.checkRelay(file: file) else {
            Issue.record("the file should fail")
            return
        }
        #expect(problems.errors.map(\.key) == ["tunnel.address", "reloadInterval"], "\(problems)")
    }

    @Test("admin.listen: 127.0.0.1:9180 by default, another address, or none")
    func adminListen() throws {
        let (defaults, one) = try self.load(minimalRelay)
        defer { one.remove() }
        #expect(defaults.adminListen == HostPort(host: "127.0.0.1", port: 9180))
        let (moved, two) = try self.load(minimalRelay + "admin:\n  listen: 127.0.0.1:0\n")
        defer { two.remove() }
        #expect(moved.adminListen == HostPort(host: "127.0.0.1", port: 0))
        let (off, three) = try self.load(minimalRelay + "admin:\n  listen: none\n")
        defer { three.remove() }
        #expect(off.adminListen == nil)
        #expect(try self.relayError(minimalRelay + "admin:\n  listen: somewhere\n")?.key == "admin.listen")
    }
}
