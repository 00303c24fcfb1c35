import Foundation
import SallyportConfig
import Testing

@Suite("Connector config")
struct ConnectorConfigTests {
    private func withFile<T>(_ yaml: String, _ body: (String, String) throws -> T) throws -> T {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let file = try directory.write("connector.yaml", yaml)
        return try body(file, directory.path)
    }

    private func connectorError(_ yaml: String) throws -> ConfigError? {
        try withFile(yaml) { file, _ -> ConfigError? in
            do throws(ConfigError) {
                _ = try ConfigLoader.loadConnector(file: file)
                return nil
            } catch {
                return error
            }
        }
    }

    @Test func minimalConfigGetsDefaults() throws {
        let yaml = "relay: relay.example.com:8443\ncertificate: tls/connector.pem\nkey: tls/connector.key\n"
        try withFile(yaml) { file, base in
            let connector = try ConfigLoader.loadConnector(file: file)
            #expect(
                connector
                    == ConnectorConfig(
                        file: file,
                        relay: HostPort(host: "relay.example.com", port: 8443),
                        relayServerName: nil,
                        name: nil,
                        certificate: "\(base)/tls/connector.pem",
                        key: "\(base)/tls/connector.key",
                        relayCA: nil,
                        connections: 2,
                        configRefreshInterval: .seconds(120),
                        maxIdleBackendConnections: 128,
                        backendIdleTimeout: .seconds(60)
                    )
            )
        }
    }

    @Test func groupIsTheRelaysToSet() throws {
        let yaml = "relay: relay.example.com:8443\ngroup: default\ncertificate: c.pem\nkey: c.key\n"
        try withFile(yaml) { file, _ in
            let error = try #require(throws: ConfigError.self) { try ConfigLoader.loadConnector(file: file) }
            #expect(error.line == 2)
            #expect(error.key == "group")
            #expect(error.message.contains("sallyport connectors move"))
        }
    }

    @Test func everyKey() throws {
        let yaml = """
            relay: "[2001:db8::1]:443"
            relayServerName: Relay.Example.com
            name: branch-office-1.corp
            certificate: /etc/sallyport/connector.pem
            key: /etc/sallyport/connector.key
            relayCA: ca/relay.pem
            connections: 4
            configRefreshInterval: 30s
            backend:
              maxIdleConnectionsPerHost: 0
              idleTimeout: 90s

            """
        try withFile(yaml) { file, base in
            let connector = try ConfigLoader.loadConnector(file: file)
            #expect(connector.relay == HostPort(host: "2001:db8::1", port: 443))
            #expect(connector.relayServerName == "relay.example.com")
            #expect(connector.name == "branch-office-1.corp")
            #expect(connector.certificate == "/etc/sallyport/connector.pem")
            #expect(connector.relayCA == "\(base)/ca/relay.pem")
            #expect(connector.connections == 4)
            #expect(connector.configRefreshInterval == .seconds(30))
            #expect(connector.maxIdleBackendConnections == 0)
            #expect(connector.backendIdleTimeout == .seconds(90))
        }
    }

    @Test func liveness() throws {
        let base = "relay: r.example.com:8443\ncertificate: c.pem\nkey: k.pem\n"
        let defaults = try withFile(base) { file, _ in try ConfigLoader.loadConnector(file: file) }
        #expect(defaults.liveness == TunnelLiveness(interval: .seconds(5), timeout: .seconds(15)))
        let set = try withFile(base + "liveness:\n  interval: 2s\n  timeout: 6s\n") { file, _ in try ConfigLoader.loadConnector(file: file) }
        #expect(set.liveness == TunnelLiveness(interval: .seconds(2), timeout: .seconds(6)))
        let short = try #require(try connectorError(base + "liveness:\n  interval: 5s\n  timeout: 8s\n"))
        #expect(short.line == 6 && short.key == "liveness.timeout", "\(short)")
        #expect(short.message.hasPrefix("must be at least twice liveness.interval (5s)"))
        let often = try #require(try connectorError(base + "liveness:\n  interval: 500ms\n"))
        #expect(often.key == "liveness.interval" && often.message == "must be from 1s to 60s")
    }

    @Test func connectionsOutOfRange() throws {
        let error = try #require(try connectorError("relay: r.example.com:8443\ncertificate: c.pem\nkey: k.pem\nconnections: 17\n"))
        #expect(error.line == 4)
        #expect(error.column == 1)
        #expect(error.key == "connections")
        #expect(error.message == "must be from 2 to 16 (got 17)")

        let one = try #require(try connectorError("relay: r.example.com:8443\ncertificate: c.pem\nkey: k.pem\nconnections: 1\n"))
        #expect(one.message == "must be from 2 to 16 (got 1)")

        let text = try #require(try connectorError("relay: r.example.com:8443\ncertificate: c.pem\nkey: k.pem\nconnections: two\n"))
        #expect(text.message == #"must be a whole number from 2 to 16 (got "two")"#)
    }

    @Test func kerberosSection() throws {
        let base = "relay: r.example.com:8443\ncertificate: c.pem\nkey: k.pem\n"
        let config = try withFile(
            base + "kerberos:\n  keytab: conn.keytab\n  principal: SALLYPORT01$@CORP.EXAMPLE.COM\n  renewBefore: 10m\n  ticketCache:\n    maxEntries: 500\n  allowedSPNs: [HTTP/app.corp.example.com, \"HTTP/*.corp.example.com\"]\n  kdcRetryDelay: 5s\n"
        ) { file, directory in (try ConfigLoader.loadConnector(file: file), directory) }
        #expect(config.0.kerberos.keytab == config.1 + "/conn.keytab")
        #expect(config.0.kerberos.principal == "SALLYPORT01$@CORP.EXAMPLE.COM")
        #expect(config.0.kerberos.renewBefore == .seconds(600))
        #expect(config.0.kerberos.maxCachedTickets == 500)
        #expect(config.0.kerberos.allowedSPNs == ["HTTP/app.corp.example.com", "HTTP/*.corp.example.com"])
        #expect(config.0.kerberos.kdcRetryDelay == .seconds(5))
        let defaults = try withFile(base) { file, _ in try ConfigLoader.loadConnector(file: file).kerberos }
        #expect(defaults == KerberosSettings())
        #expect(defaults.keytab == "/etc/krb5.keytab")

        let short = try #require(try connectorError(base + "kerberos:\n  renewBefore: 60s\n"))
        #expect(short.line == 5 && short.key == "kerberos.renewBefore")
        #expect(short.message.contains("at least 150s"))
        let badSPN = try #require(try connectorError(base + "kerberos:\n  allowedSPNs: [\"HTTP app\"]\n"))
        #expect(badSPN.key?.hasPrefix("kerberos.allowedSPNs") == true)
        #expect(badSPN.message.contains("must be an SPN"))
        let retry = try #require(try connectorError(base + "kerberos:\n  kdcRetryDelay: 10m\n"))
        #expect(retry.key == "kerberos.kdcRetryDelay" && retry.message.contains("1s to 5m"))
        #expect(try withFile(base) { file, _ in try ConfigLoader.loadConnector(file: file).kerberos.kdcRetryDelay } == .seconds(2))
        let unknown = try #require(try connectorError(base + "kerberos:\n  keytabs: x\n"))
        #expect(unknown.key == "kerberos.keytabs")
    }

    @Test func relayNeedsANonZeroPort() throws {
        let error = try #require(try connectorError("relay: relay.example.com:0\ncertificate: c.pem\nkey: k.pem\n"))
        #expect(error.line == 1)
        #expect(error.key == "relay")
        #expect(error.message == #"has an invalid port "0" (expected 1 to 65535)"#)
    }

    @Test func missingRequiredKey() throws {
        let error = try #require(try connectorError("# connector\nrelay: relay.example.com:8443\ncertificate: c.pem\n"))
        #expect(error.line == 2)
        #expect(error.key == "key")
        #expect(error.message == "required key is missing")
    }

    @Test func nestedBackendErrors() throws {
        let error = try #require(
            try connectorError("relay: r.example.com:8443\ncertificate: c.pem\nkey: k.pem\nbackend:\n  maxIdleConnections: 4\n")
        )
        #expect(error.line == 5)
        #expect(error.column == 3)
        #expect(error.key == "backend.maxIdleConnections")
        #expect(error.message == #"unknown key (did you mean "maxIdleConnectionsPerHost"?)"#)
    }

    @Test func groupUsesTheNameRule() throws {
        let error = try #require(try connectorError("relay: r.example.com:8443\ncertificate: c.pem\nkey: k.pem\ngroup: Branch Office\n"))
        #expect(error.line == 4)
        #expect(error.key == "group")
    }
    /// `plugins`: the short form (a directory) and the mapping with per-plugin choices; mistakes at their key.
    @Test func pluginsTakeADirectoryOrAMapping() throws {
        let base = "relay: relay.example.com:8443\ncertificate: c.pem\nkey: c.key\n"
        try withFile(base + "plugins: lib/plugins\n") { file, directory in
            let plugins = try ConfigLoader.loadConnector(file: file).plugins
            #expect(plugins == PluginSettings(directory: "\(directory)/lib/plugins"))
        }
        let mapping = base + "plugins:\n  directory: /opt/plugins\n  inProcess: [libFast.so]\n  logLevel: {libGreeting.so: debug}\n"
        try withFile(mapping) { file, _ in
            let plugins = try ConfigLoader.loadConnector(file: file).plugins
            #expect(plugins == PluginSettings(directory: "/opt/plugins", inProcess: ["libFast.so"], logLevels: ["libGreeting.so": "debug"]))
        }
        let notAFile = try #require(try connectorError(base + "plugins:\n  directory: /opt/plugins\n  inProcess: [../evil.so]\n"))
        #expect(notAFile.key == "plugins.inProcess[0]" && notAFile.message.contains("file name in the plugins directory"), "\(notAFile)")
        let badLevel = try #require(try connectorError(base + "plugins:\n  directory: /opt/plugins\n  logLevel: {libA.so: loud}\n"))
        #expect(badLevel.key == "plugins.logLevel.libA.so" && badLevel.line == 6, "\(badLevel)")
        let missing = try #require(try connectorError(base + "plugins:\n  inProcess: []\n"))
        #expect(missing.key == "plugins.directory" && missing.message.contains("required"), "\(missing)")
    }
}

