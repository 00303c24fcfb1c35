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
    /// `backend.maxIdleConnectionsPerHost`: idle backend connections kept per host. Default 128 (as many as nginx keeps per worker in a typical `keepalive 128`).
    public var maxIdleBackendConnections: Int
    /// `backend.idleTimeout`: how long an idle backend connection is kept. Default 60s.
    public var backendIdleTimeout: Duration
    /// `plugins`: SSO handler plugins (`*.so`) loaded at start; nil loads none.
    public var plugins: PluginSettings?
    /// `plugins.directory`.
    public var pluginsDirectory: String? { self.plugins?.directory }
    /// `kerberos`: the connector's Kerberos identity for the `kcd` handler.
    public var kerberos: KerberosSettings
    /// `liveness`: how the connector notices a relay that went silent (PING interval and timeout).
    public var liveness: TunnelLiveness
    /// `admin.listen`: the connector's admin listener (plain HTTP: `/metrics`, `/readyz`, `/livez`, the status
    /// page at `/`); nil (the default) opens none.
    public var adminListen: HostPort?
    /// `proxy`: the HTTP proxy to reach the relay through (`CONNECT`). `.environment` (the default) follows
    /// `HTTPS_PROXY`/`NO_PROXY`; `.direct` (`proxy: none`) ignores them.
    public var proxy: ProxyChoice

    /// How the connector reaches the relay.
    public enum ProxyChoice: Sendable, Hashable {
        /// `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` decide (no key in the file).
        case environment
        /// `proxy: none`: always directly.
        case direct
        /// `proxy: http://…`.
        case proxy(OutboundProxy)

        /// The proxy to use for `target` in `environment`.
        public func resolve(environment: [String: String], target: String) -> Result<OutboundProxy?, ProxyProblem> {
            switch self {
            case .environment: OutboundProxy.fromEnvironment(environment, target: target)
            case .direct: .success(nil)
            case .proxy(let proxy): .success(proxy)
            }
        }
    }

    /// Creates a connector configuration in code (tests, the demo); paths are used as given.
    public init(
        file: String = "",
        relay: HostPort,
        relayServerName: String? = nil,
        name: String? = nil,
        certificate: String,
        key: String,
        relayCA: String? = nil,
        connections: Int = 2,
        configRefreshInterval: Duration = .seconds(120),
        maxIdleBackendConnections: Int = 128,
        backendIdleTimeout: Duration = .seconds(60),
        plugins: PluginSettings? = nil,
        kerberos: KerberosSettings = KerberosSettings(),
        liveness: TunnelLiveness = TunnelLiveness(),
        adminListen: HostPort? = nil,
        proxy: ProxyChoice = .environment
    ) {
        self.file = file
        self.relay = relay
        self.relayServerName = relayServerName
        self.name = name
        self.certificate = certificate
        self.key = key
        self.relayCA = relayCA
        self.connections = connections
        self.configRefreshInterval = configRefreshInterval
        self.maxIdleBackendConnections = maxIdleBackendConnections
        self.backendIdleTimeout = backendIdleTimeout
        self.plugins = plugins
        self.kerberos = kerberos
        self.liveness = liveness
        self.adminListen = adminListen
        self.proxy = proxy
    }
}

/// The connector's `kerberos` section: where its credential comes from, how long tickets are kept, and
/// which SPNs it may delegate to.
public struct KerberosSettings: Sendable, Hashable {
    /// `keytab`: default `/etc/krb5.keytab`, the host keytab of a domain-joined machine.
    public var keytab: String
    /// `principal`: the connector's principal; nil uses the keytab's first.
    public var principal: String?
    /// `renewBefore`: the TGT and cached user tickets are replaced this long before they expire. Default 5m.
    public var renewBefore: Duration
    /// `ticketCache.maxEntries`: cached (user, SPN) credentials; least recently used go first. Default 10000.
    public var maxCachedTickets: Int
    /// `kdcRetryDelay`: after no KDC answered, new exchanges fail at once for this long, so no thread waits on
    /// a dead KDC. Default 2s.
    public var kdcRetryDelay: Duration
    /// `allowedSPNs`: the only SPNs this connector delegates to (`HTTP/*.corp.example.com` for any host
    /// below); empty allows every SPN the directory lets it delegate to.
    public var allowedSPNs: [String]
    /// `ticketCache.revalidateInterval`: a cached user ticket is used at most this long without the KDC
    /// confirming the user (one S4U2Self in the background), so disabled users are cut off within it. Default 5m.
    public var revalidateInterval: Duration

    public init(
        keytab: String = "/etc/krb5.keytab", principal: String? = nil, renewBefore: Duration = .seconds(300), maxCachedTickets: Int = 10_000,
        allowedSPNs: [String] = [], kdcRetryDelay: Duration = .seconds(2), revalidateInterval: Duration = .seconds(300)
    ) {
        self.revalidateInterval = revalidateInterval
        self.keytab = keytab
        self.principal = principal
        self.renewBefore = renewBefore
        self.maxCachedTickets = maxCachedTickets
        self.allowedSPNs = allowedSPNs
        self.kdcRetryDelay = kdcRetryDelay
    }
}

/// Reads a connector's config file.
enum ConnectorFile {
    static let topLevelKeys = [
        "relay", "relayServerName", "name", "group", "certificate", "key", "relayCA", "connections", "configRefreshInterval", "backend",
        "plugins", "kerberos", "liveness", "admin", "proxy",
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
        if reader.keyMark("group") != nil {
            _ = reader.optional("group") { value throws(ConfigError) -> Void in
                throw value.error(
                    "is set by the relay now: a connector joins the group of its registration token; remove this key, and move it with `sallyport connectors move ID --group G` on the relay"
                )
            }
        }
        let certificate = reader.required("certificate") { value throws(ConfigError) in try value.path(relativeTo: directory) }
        let key = reader.required("key") { value throws(ConfigError) in try value.path(relativeTo: directory) }
        let relayCA = reader.optional("relayCA") { value throws(ConfigError) in try value.path(relativeTo: directory) }
        let connections = reader.optional("connections", default: 2) { value throws(ConfigError) in try value.int(in: 2...16) }
        let configRefreshInterval = reader.optional("configRefreshInterval", default: .seconds(120)) { value throws(ConfigError) in
            try value.duration()
        }
        let backend = reader.optional("backend", default: BackendSection(), backendSection)
        let plugins = reader.optional("plugins") { value throws(ConfigError) in try pluginsSection(value, directory: directory) }
        let kerberos = reader.optional("kerberos", default: KerberosSettings()) { value throws(ConfigError) in
            try kerberosSection(value, directory: directory)
        }
        let liveness = reader.optional("liveness", default: TunnelLiveness()) { value throws(ConfigError) in try value.liveness() }
        let adminListen = reader.optional("admin") { value throws(ConfigError) -> HostPort? in
            var admin = try value.mapping()
            let listen = admin.optional("listen") { value throws(ConfigError) in try AdminListen.parse(value) } ?? nil
            admin.finish()
            return listen
        } ?? nil
        let proxy = reader.optional("proxy", default: ConnectorConfig.ProxyChoice.environment) { value throws(ConfigError) in
            let text = try value.nonEmptyString()
            if text == "none" { return .direct }
            switch OutboundProxy.parse(text) {
            case .success(let proxy): return .proxy(proxy)
            case .failure(let problem): throw value.error(problem.message)
            }
        }
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
                certificate: certificate,
                key: key,
                relayCA: relayCA,
                connections: connections,
                configRefreshInterval: configRefreshInterval,
                maxIdleBackendConnections: backend.maxIdleConnectionsPerHost,
                backendIdleTimeout: backend.idleTimeout,
                plugins: plugins,
                kerberos: kerberos,
                liveness: liveness,
                adminListen: adminListen,
                proxy: proxy
            )
        )
    }

    /// Connector names are shown in logs and status; host names are the usual choice, so allow their characters.
    private static func connectorName(_ value: ValueNode) throws(ConfigError) -> String {
        let text = try value.nonEmptyString()
        if let problem = ValueRules.connectorNameProblem(text) { throw value.error(problem) }
        return text
    }

    private static func kerberosSection(_ value: ValueNode, directory: String) throws(ConfigError) -> KerberosSettings {
        var reader = try value.mapping()
        let defaults = KerberosSettings()
        let keytab = reader.optional("keytab", default: defaults.keytab) { value throws(ConfigError) in try value.path(relativeTo: directory) }
        let principal = reader.optional("principal") { value throws(ConfigError) in try kerberosName(value, service: false) }
        let renewBefore = reader.optional("renewBefore", default: defaults.renewBefore) { value throws(ConfigError) in
            let duration = try value.duration()
            guard duration >= .seconds(150) else {
                throw value.error("must be at least 150s: an AD KDC (Samba's, as measured) refuses ticket requests made with a TGT that has 2 minutes or less left")
            }
            return duration
        }
        let (maxEntries, revalidateInterval) = reader.optional("ticketCache", default: (defaults.maxCachedTickets, defaults.revalidateInterval)) {
            value throws(ConfigError) in
            var cache = try value.mapping()
            let entries = cache.optional("maxEntries", default: defaults.maxCachedTickets) { value throws(ConfigError) in try value.int(in: 1...10_000_000) }
            let interval = cache.optional("revalidateInterval", default: defaults.revalidateInterval) { value throws(ConfigError) in
                let duration = try value.duration()
                guard duration >= .seconds(1), duration <= .seconds(86400) else { throw value.error("must be from 1s to 24h") }
                return duration
            }
            cache.finish()
            return (entries, interval)
        }
        let allowed = reader.optional("allowedSPNs", default: []) { value throws(ConfigError) in
            try value.list { item throws(ConfigError) in try kerberosName(item, service: true) }
        }
        let retryDelay = reader.optional("kdcRetryDelay", default: defaults.kdcRetryDelay) { value throws(ConfigError) in
            let duration = try value.duration()
            guard duration >= .seconds(1), duration <= .seconds(300) else { throw value.error("must be from 1s to 5m") }
            return duration
        }
        reader.finish()
        return KerberosSettings(
            keytab: keytab, principal: principal, renewBefore: renewBefore, maxCachedTickets: maxEntries, allowedSPNs: allowed, kdcRetryDelay: retryDelay,
            revalidateInterval: revalidateInterval
        )
    }

    /// A principal as written (`SALLYPORT01$@CORP.EXAMPLE.COM`), or an SPN pattern (`HTTP/app.corp.example.com`,
    /// `HTTP/*.corp.example.com`): no spaces, control characters or backslashes.
    private static func kerberosName(_ value: ValueNode, service: Bool) throws(ConfigError) -> String {
        let text = try value.nonEmptyString()
        let bad = text.unicodeScalars.contains { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F || $0 == "\\" }
        let slashes = text.filter { $0 == "/" }.count
        if bad || (service && (slashes != 1 || text.contains("@") || text.hasPrefix("/") || text.hasSuffix("/"))) {
            throw value.error(
                service
                    ? "must be an SPN such as HTTP/app.corp.example.com or HTTP/*.corp.example.com, without a realm (got \(quoted(text)))"
                    : "must be a Kerberos principal such as SALLYPORT01$@CORP.EXAMPLE.COM (got \(quoted(text)))"
            )
        }
        return text
    }

    private struct BackendSection {
        var maxIdleConnectionsPerHost = 128
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

/// The connector's `plugins`: a directory (short form), or a mapping with the directory and per-plugin choices.
public struct PluginSettings: Sendable, Hashable {
    /// `directory`: where the plugin libraries (`*.so`) are.
    public var directory: String
    /// `inProcess`: library file names (`libFast.so`) loaded into the connector itself rather than a plugin host
    /// process: no isolation (a crash there stops the connector), no hop; for trusted, speed-critical plugins.
    public var inProcess: [String]
    /// `logLevel`: the log level of a plugin's handlers, by library file name (default: the connector's).
    public var logLevels: [String: String]

    public init(directory: String, inProcess: [String] = [], logLevels: [String: String] = [:]) {
        self.directory = directory
        self.inProcess = inProcess
        self.logLevels = logLevels
    }

    /// The levels a plugin's log may be set to.
    public static let levels = ["debug", "info", "notice", "warning", "error"]
}

private func pluginsSection(_ value: ValueNode, directory: String) throws(ConfigError) -> PluginSettings {
    if !value.isMapping { return PluginSettings(directory: try value.path(relativeTo: directory)) }
    var reader = try value.mapping()
    let path = reader.required("directory") { value throws(ConfigError) in try value.path(relativeTo: directory) }
    func libraryName(_ value: ValueNode, _ name: String) throws(ConfigError) -> String {
        guard name.hasSuffix(".so"), !name.contains("/") else {
            throw value.error("must be a plugin library's file name in the plugins directory, e.g. libChallengeSSO.so (got \(quoted(name)))")
        }
        return name
    }
    let inProcess = reader.optional("inProcess", default: []) { value throws(ConfigError) in
        try value.list { item throws(ConfigError) in try libraryName(item, try item.nonEmptyString()) }
    }
    let levels = reader.optional("logLevel", default: [:]) { value throws(ConfigError) -> [String: String] in
        var levels: [String: String] = [:]
        var entries = try value.mapping()
        for entry in entries.takeRemaining() {
            do throws(ConfigError) {
                let library = try libraryName(entry.value, entry.key)
                let level = try entry.value.string()
                guard PluginSettings.levels.contains(level) else {
                    throw entry.value.error("must be one of \(PluginSettings.levels.joined(separator: ", ")) (got \(quoted(level)))")
                }
                levels[library] = level
            } catch {
                value.diagnostics.report(error)
            }
        }
        return levels
    }
    reader.finish()
    return PluginSettings(directory: path ?? "", inProcess: inProcess, logLevels: levels)
}
