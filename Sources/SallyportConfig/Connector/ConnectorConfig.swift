/// A connector's configuration: which relay to dial, with which identity, and how to treat backends.
public struct ConnectorConfig: Sendable, Hashable {
    /// The config file's path as given.
    public var file: String
    /// `relay`: the relay's tunnel address.
    public var relay: HostPort
    /// `relayServerName`: the name to verify on the relay's tunnel certificate; nil means `relay.host`.
    public var relayServerName: String?
    /// `name`: this connector's name as the relay shows it; nil means the machine's host name.
    public var name: String?
    /// `group`: the connector group whose apps this connector serves. Default "default".
    public var group: String
    /// `certificate`: the connector's client certificate (PEM chain).
    public var certificate: String
    /// `key`: its private key (PEM).
    public var key: String
    /// `relayCA`: CA bundle for the relay's tunnel certificate; nil uses the system trust store.
    public var relayCA: String?
    /// `connections`: tunnel connections kept open to the relay, 2...16 (at least two, so one can fail or drain while the other serves). Default 2.
    public var connections: Int
    /// `configRefreshInterval`: how often the connector asks the relay for its apps. Default 120s.
    public var configRefreshInterval: Duration
    /// `backend.maxIdleConnectionsPerHost`: idle backend connections kept per host. Default 32.
    public var maxIdleBackendConnections: Int
    /// `backend.idleTimeout`: how long an idle backend connection is kept. Default 60s.
    public var backendIdleTimeout: Duration
    /// `plugins`: directory of SSO handler plugins (`*.so`) loaded at start; nil loads none.
    public var pluginsDirectory: String?

    /// Creates a connector configuration in code (tests, the demo); paths are used as given.
    public init(
        file: String = "",
        relay: HostPort,
        relayServerName: String? = nil,
        name: String? = nil,
        group: String = "default",
        certificate: String,
        key: String,
        relayCA: String? = nil,
        connections: Int = 2,
        configRefreshInterval: Duration = .seconds(120),
        maxIdleBackendConnections: Int = 32,
        backendIdleTimeout: Duration = .seconds(60),
        pluginsDirectory: String? = nil
    ) {
        self.file = file
        self.relay = relay
        self.relayServerName = relayServerName
        self.name = name
        self.group = group
        self.certificate = certificate
        self.key = key
        self.relayCA = relayCA
        self.connections = connections
        self.configRefreshInterval = configRefreshInterval
        self.maxIdleBackendConnections = maxIdleBackendConnections
        self.backendIdleTimeout = backendIdleTimeout
        self.pluginsDirectory = pluginsDirectory
    }
}

/// Reads a connector's config file.
enum ConnectorFile {
    static let topLevelKeys = [
        "relay", "relayServerName", "name", "group", "certificate", "key", "relayCA", "connections", "configRefreshInterval", "backend",
        "plugins",
    ]

    static func parse(yaml: String, file: String) -> Result<ConnectorConfig, FileProblems> {
        let diagnostics = Diagnostics(file: file)
        let directory = ConfigPaths.directory(of: file)
        var reader: MappingReader
        do throws(ConfigError) {
            let root = try Document.root(yaml: yaml, file: file, kind: "a connector config", expectedKeys: topLevelKeys)
            reader = try MappingReader(ValueNode(node: root, keyPath: "", diagnostics: diagnostics))
        } catch {
            return .failure(FileProblems(errors: [error]))
        }

        let relay = reader.required("relay") { value throws(ConfigError) in try value.hostPort(allowZeroPort: false) }
        let relayServerName = reader.optional("relayServerName") { value throws(ConfigError) in try value.serverName() }
        let name = reader.optional("name") { value throws(ConfigError) in try connectorName(value) }
        let group = reader.optional("group", default: "default") { value throws(ConfigError) in try value.name() }
        let certificate = reader.required("certificate") { value throws(ConfigError) in try value.path(relativeTo: directory) }
        let key = reader.required("key") { value throws(ConfigError) in try value.path(relativeTo: directory) }
        let relayCA = reader.optional("relayCA") { value throws(ConfigError) in try value.path(relativeTo: directory) }
        let connections = reader.optional("connections", default: 2) { value throws(ConfigError) in try value.int(in: 2...16) }
        let configRefreshInterval = reader.optional("configRefreshInterval", default: .seconds(120)) { value throws(ConfigError) in
            try value.duration()
        }
        let backend = reader.optional("backend", default: BackendSection(), backendSection)
        let plugins = reader.optional("plugins") { value throws(ConfigError) in try value.path(relativeTo: directory) }
        reader.finish()

        guard diagnostics.errors.isEmpty, let relay, let certificate, let key else {
            return .failure(FileProblems(errors: diagnostics.sortedErrors))
        }
        return .success(
            ConnectorConfig(
                file: file,
                relay: relay,
                relayServerName: relayServerName,
                name: name,
                group: group,
                certificate: certificate,
                key: key,
                relayCA: relayCA,
                connections: connections,
                configRefreshInterval: configRefreshInterval,
                maxIdleBackendConnections: backend.maxIdleConnectionsPerHost,
                backendIdleTimeout: backend.idleTimeout,
                pluginsDirectory: plugins
            )
        )
    }

    /// Connector names are shown in logs and status; host names are the usual choice, so allow their characters.
    private static func connectorName(_ value: ValueNode) throws(ConfigError) -> String {
        let text = try value.nonEmptyString()
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_".unicodeScalars)
        guard text.unicodeScalars.count <= 253, text.unicodeScalars.allSatisfy(allowed.contains) else {
            throw value.error("must be 1 to 253 letters, digits, \".\", \"-\" or \"_\" (got \(quoted(text)))")
        }
        return text
    }

    private struct BackendSection {
        var maxIdleConnectionsPerHost = 32
        var idleTimeout: Duration = .seconds(60)
    }

    private static func backendSection(_ value: ValueNode) throws(ConfigError) -> BackendSection {
        var reader = try value.mapping()
        let defaults = BackendSection()
        let section = BackendSection(
            maxIdleConnectionsPerHost: reader.optional("maxIdleConnectionsPerHost", default: defaults.maxIdleConnectionsPerHost) {
                value throws(ConfigError) in try value.int(in: 0...1024)
            },
            idleTimeout: reader.optional("idleTimeout", default: defaults.idleTimeout) { value throws(ConfigError) in try value.duration() }
        )
        reader.finish()
        return section
    }
}
