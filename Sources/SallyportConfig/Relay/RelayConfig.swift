/// The relay's own configuration: its public listener, the tunnel listener and where the app files are.
public struct RelayConfig: Sendable, Hashable {
    /// The config file's path as given.
    public var file: String
    /// `public.listen`: where users connect over HTTPS.
    public var publicListen: HostPort
    /// `public.certificates`: the certificates served to users, chosen by SNI.
    public var publicCertificates: [CertificateConfig]
    /// `public.limits`: request limits at the public edge.
    public var limits: EdgeLimits
    /// `tunnel.listen`: where connectors connect; nil when they connect only on the public port
    /// (`tunnel.onPublicPort`).
    public var tunnelListen: HostPort?
    /// `tunnel.onPublicPort`: connectors may also (or only) connect on the public listener's port, told apart
    /// from users by the name they ask for in TLS (SNI): `tunnel.address`'s host. Default false.
    public var tunnelOnPublicPort: Bool
    /// `tunnel.certificate`: the relay's server certificate (PEM chain) for the tunnel.
    public var tunnelCertificate: String
    /// `tunnel.key`: its private key (PEM).
    public var tunnelKey: String
    /// `tunnel.address`: the address connectors dial, printed in registration commands; nil means the tunnel
    /// certificate's first DNS name with the listen port.
    public var tunnelAddress: HostPort?
    /// `tunnel.liveness`: how the relay notices a connector that went silent (PING interval and timeout).
    public var tunnelLiveness: TunnelLiveness
    /// `state`: the directory of the relay's state database and admin socket. Default `state` beside the file.
    public var stateDirectory: String
    /// `store`: where connectors, groups, tokens and certificates are kept: `sqlite` (the default, in the state
    /// directory) or a PostgreSQL database that several relays share.
    public var store: StoreConfig
    /// `connectors`: how connectors register, are identified, renewed and retired.
    public var connectors: ConnectorPolicy
    /// `admin.socket`: the Unix socket of the admin API. Default `<state>/admin.sock`.
    public var adminSocket: String
    /// `admin.listen`: the admin listener (plain HTTP: `/metrics`, `/readyz`, `/livez`, the status page at `/`).
    /// In a file it defaults to `127.0.0.1:9180`, and `none` turns it off; in code the default is none.
    public var adminListen: HostPort?
    /// `apps`: the directory of app files.
    public var appsDirectory: String
    /// `reloadInterval`: how often the apps directory is checked for changes. Default 2s.
    public var reloadInterval: Duration
    /// `drainTimeout`: on SIGTERM, how long in-flight requests may take to finish. Default 30s.
    public var drainTimeout: Duration
    /// `identityProviders`: the OIDC and JWT providers apps may name in `preAuthentication`.
    public var identityProviders: [IdentityProviderConfig]
    /// `sessions`: sign-in cookie settings.
    public var sessions: SessionConfig

    /// Creates a relay configuration in code (tests, the demo); paths are used as given.
    public init(
        file: String = "",
        publicListen: HostPort,
        publicCertificates: [CertificateConfig],
        limits: EdgeLimits = EdgeLimits(),
        tunnelListen: HostPort?,
        tunnelOnPublicPort: Bool = false,
        tunnelCertificate: String,
        tunnelKey: String,
        tunnelAddress: HostPort? = nil,
        tunnelLiveness: TunnelLiveness = TunnelLiveness(),
        stateDirectory: String,
        store: StoreConfig = .sqlite,
        connectors: ConnectorPolicy = ConnectorPolicy(),
        adminSocket: String? = nil,
        adminListen: HostPort? = nil,
        appsDirectory: String,
        reloadInterval: Duration = .seconds(2),
        drainTimeout: Duration = .seconds(30),
        identityProviders: [IdentityProviderConfig] = [],
        sessions: SessionConfig = SessionConfig()
    ) {
        self.file = file
        self.publicListen = publicListen
        self.publicCertificates = publicCertificates
        self.limits = limits
        self.tunnelListen = tunnelListen
        self.tunnelOnPublicPort = tunnelOnPublicPort
        self.tunnelCertificate = tunnelCertificate
        self.tunnelKey = tunnelKey
        self.tunnelAddress = tunnelAddress
        self.tunnelLiveness = tunnelLiveness
        self.stateDirectory = stateDirectory
        self.store = store
        self.connectors = connectors
        self.adminSocket = adminSocket ?? (stateDirectory.hasSuffix("/") ? stateDirectory + "admin.sock" : stateDirectory + "/admin.sock")
        self.adminListen = adminListen
        self.appsDirectory = appsDirectory
        self.reloadInterval = reloadInterval
        self.drainTimeout = drainTimeout
        self.identityProviders = identityProviders
        self.sessions = sessions
    }
}

/// The relay's `connectors` section: the CA that issues connector certificates, their lifetime, when an
/// unseen connector counts as inactive and when it is removed.
public struct ConnectorPolicy: Sendable, Hashable {
    /// `ca.certificate`: the connector CA's certificate (PEM); nil: no registration by token, only `connectors add`.
    public var caCertificate: String?
    /// `ca.key`: the connector CA's private key (PEM); it never leaves the relay host.
    public var caKey: String?
    /// `certificateLifetime`: how long a connector certificate is valid; connectors renew when a third is left.
    /// Default 30d.
    public var certificateLifetime: Duration
    /// `inactiveAfter`: a connector with no tunnel for this long is inactive. Default 5m.
    public var inactiveAfter: Duration
    /// `removeAfter`: a connector inactive this long is removed. Default 10d.
    public var removeAfter: Duration
    /// `trustedCAs`: CA files of your own PKI; their certificates are accepted only for connectors added with
    /// `sallyport connectors add`.
    public var trustedCAs: [String]

    /// Creates a policy; each value defaults to the documented one.
    public init(
        caCertificate: String? = nil, caKey: String? = nil, certificateLifetime: Duration = .seconds(30 * 86400),
        inactiveAfter: Duration = .seconds(300), removeAfter: Duration = .seconds(10 * 86400), trustedCAs: [String] = []
    ) {
        self.caCertificate = caCertificate
        self.caKey = caKey
        self.certificateLifetime = certificateLifetime
        self.inactiveAfter = inactiveAfter
        self.removeAfter = removeAfter
        self.trustedCAs = trustedCAs
    }
}

/// One certificate the relay serves on its public listener.
public struct CertificateConfig: Sendable, Codable, Hashable {
    /// SNI names this certificate serves, lowercased; may contain wildcards like "*.example.com".
    /// Empty: the default certificate, for names no other certificate lists.
    public var hosts: [String]
    /// PEM certificate chain file.
    public var certificate: String
    /// PEM private key file.
    public var key: String

    /// Creates a certificate entry.
    public init(hosts: [String] = [], certificate: String, key: String) {
        self.hosts = hosts
        self.certificate = certificate
        self.key = key
    }
}

/// Limits the relay enforces on requests from the internet, before anything reaches the tunnel.
public struct EdgeLimits: Sendable, Codable, Hashable {
    /// Total bytes of all header names and values. Default 32768.
    public var maxHeaderBytes: Int
    /// Number of header fields. Default 100.
    public var maxHeaderCount: Int
    /// Bytes in the request target (path and query). Default 8192.
    public var maxRequestLineBytes: Int
    /// Time allowed to receive a request's headers. Default 10s.
    public var headerReadTimeout: Duration
    /// How long an idle keep-alive connection is kept. Default 75s.
    public var idleTimeout: Duration
    /// Time allowed for a new connection's TLS handshake. Default 10s.
    public var handshakeTimeout: Duration
    /// Longest wait for more of a request body while the relay is ready to read it. Default 30s.
    public var bodyReadTimeout: Duration
    /// Bytes per second a request body must average, counted only while the relay is ready to read it and after
    /// its first 5 seconds; 0 turns the check off. Default 240 (Kestrel's).
    public var minBodyRate: Int
    /// Longest time a response may wait for the client to read it (its connection or stream accepts nothing).
    /// Default 60s.
    public var sendTimeout: Duration
    /// Open public connections at most; more are closed as they arrive. Default 10000.
    public var maxConnections: Int
    /// Open public connections from one client address (IPv6: one /64) at most. Default 512: offices behind
    /// one NAT address share it.
    public var maxConnectionsPerClient: Int

    /// Creates limits; each defaults to the documented value.
    public init(
        maxHeaderBytes: Int = 32768,
        maxHeaderCount: Int = 100,
        maxRequestLineBytes: Int = 8192,
        headerReadTimeout: Duration = .seconds(10),
        idleTimeout: Duration = .seconds(75),
        handshakeTimeout: Duration = .seconds(10),
        bodyReadTimeout: Duration = .seconds(30),
        minBodyRate: Int = 240,
        sendTimeout: Duration = .seconds(60),
        maxConnections: Int = 10000,
        maxConnectionsPerClient: Int = 512
    ) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
        self.maxRequestLineBytes = maxRequestLineBytes
        self.headerReadTimeout = headerReadTimeout
        self.idleTimeout = idleTimeout
        self.handshakeTimeout = handshakeTimeout
        self.bodyReadTimeout = bodyReadTimeout
        self.minBodyRate = minBodyRate
        self.sendTimeout = sendTimeout
        self.maxConnections = maxConnections
        self.maxConnectionsPerClient = maxConnectionsPerClient
    }
}

/// Reads the relay's config file.
enum RelayFile {
    static let topLevelKeys = [
        "public", "tunnel", "state", "store", "connectors", "admin", "apps", "reloadInterval", "drainTimeout", "identityProviders", "sessions",
    ]

    static func parse(yaml: String, file: String) -> Result<RelayConfig, FileProblems> {
        let diagnostics = Diagnostics(file: file)
        let directory = ConfigPaths.directory(of: file)
        var reader: MappingReader
        do throws(ConfigError) {
            let root = try Document.root(yaml: yaml, file: file, kind: "a relay config", expectedKeys: topLevelKeys)
            reader = try MappingReader(ValueNode(node: root, keyPath: "", diagnostics: diagnostics))
        } catch {
            return .failure(FileProblems(errors: [error]))
        }

        // A section with a missing or invalid key comes back as nil (the problem is already reported).
        let edge = reader.required("public") { value throws(ConfigError) in try publicSection(value, directory: directory) } ?? nil
        let tunnel = reader.required("tunnel") { value throws(ConfigError) in try tunnelSection(value, directory: directory) } ?? nil
        let state = reader.optional("state", default: ConfigPaths.resolve("state", relativeTo: directory)) { value throws(ConfigError) in
            try value.path(relativeTo: directory)
        }
        let store = reader.optional("store", default: StoreConfig.sqlite) { value throws(ConfigError) in
            try Self.store(value, directory: directory)
        }
        let connectors = reader.optional("connectors", default: ConnectorPolicy()) { value throws(ConfigError) in
            try connectorPolicy(value, directory: directory)
        }
        let admin = reader.optional("admin", default: (socket: nil, listen: AdminListen.defaultRelay)) { value throws(ConfigError) in
            var admin = try value.mapping()
            let socket = admin.optional("socket") { value throws(ConfigError) in try value.path(relativeTo: directory) }
            let listen = admin.optional("listen", default: AdminListen.defaultRelay) { value throws(ConfigError) in try AdminListen.parse(value) }
            admin.finish()
            return (socket: socket, listen: listen)
        }
        let apps = reader.required("apps") { value throws(ConfigError) in try value.path(relativeTo: directory) }
        let reloadInterval = reader.optional("reloadInterval", default: .seconds(2)) { value throws(ConfigError) in
            try value.duration()
        }
        let drainTimeout = reader.optional("drainTimeout", default: .seconds(30)) { value throws(ConfigError) in
            try value.duration(allowZero: true)
        }
        let providers = reader.optional("identityProviders", default: []) { value throws(ConfigError) in
            try IdentityProviderSection.providers(value, directory: directory)
        }
        let sessions = reader.optional("sessions", default: SessionConfig()) { value throws(ConfigError) in
            try IdentityProviderSection.sessions(value, directory: directory)
        }
        if case .postgres = store, let tunnel, tunnel.address == nil {
            // Each relay tells connectors where to reach it; a name derived from a shared certificate would be
            // the same on every relay.
            diagnostics.report(
                diagnostics.error(
                    at: reader.keyMark("tunnel") ?? reader.mark, key: "tunnel.address",
                    "is required with store.postgres: each relay's own host:port, which it tells connectors to dial (e.g. relay-a.example.com:8443)"
                )
            )
        }
        reader.finish()

        guard diagnostics.errors.isEmpty, let edge, let tunnel, let apps else {
            return .failure(FileProblems(errors: diagnostics.sortedErrors))
        }
        return .success(
            RelayConfig(
                file: file,
                publicListen: edge.listen,
                publicCertificates: edge.certificates,
                limits: edge.limits,
                tunnelListen: tunnel.listen,
                tunnelOnPublicPort: tunnel.onPublicPort,
                tunnelCertificate: tunnel.certificate,
                tunnelKey: tunnel.key,
                tunnelAddress: tunnel.address,
                tunnelLiveness: tunnel.liveness,
                stateDirectory: state,
                store: store,
                connectors: connectors,
                adminSocket: admin.socket,
                adminListen: admin.listen,
                appsDirectory: apps,
                reloadInterval: reloadInterval,
                drainTimeout: drainTimeout,
                identityProviders: providers,
                sessions: sessions
            )
        )
    }

    private struct PublicSection {
        var listen: HostPort
        var certificates: [CertificateConfig]
        var limits: EdgeLimits
    }

    private static func publicSection(_ value: ValueNode, directory: String) throws(ConfigError) -> PublicSection? {
        var reader = try value.mapping()
        let listen = reader.required("listen") { value throws(ConfigError) in try value.hostPort(allowZeroPort: true) }
        let certificates = reader.required("certificates") { value throws(ConfigError) in
            try certificateList(value, directory: directory)
        }
        let limits = reader.optional("limits", default: EdgeLimits(), edgeLimits)
        reader.finish()
        guard let listen, let certificates else { return nil }
        return PublicSection(listen: listen, certificates: certificates, limits: limits)
    }

    private static func certificateList(_ value: ValueNode, directory: String) throws(ConfigError) -> [CertificateConfig] {
        var hostOwners: [String: String] = [:]  // host → key path of the entry that lists it
        var defaultEntry: String?
        let entries = try value.list { item throws(ConfigError) -> CertificateConfig? in
            var reader = try item.mapping()
            let hosts: [String] = reader.optional("hosts", default: []) { value throws(ConfigError) in
                try value.list { host throws(ConfigError) in
                    let name = try host.nonEmptyString().lowercased()
                    let bare = name.hasPrefix("*.") ? String(name.dropFirst(2)) : name
                    guard Names.isValidDNSName(bare) else {
                        throw host.error("must be a host name like \"apps.example.com\" or \"*.apps.example.com\" (got \(quoted(name)))")
                    }
                    if let owner = hostOwners[name] {
                        throw host.error("\(quoted(name)) is already listed in \(owner); each host may have one certificate")
                    }
                    hostOwners[name] = item.keyPath
                    return name
                }
            }
            let certificate = reader.required("certificate") { value throws(ConfigError) in try value.path(relativeTo: directory) }
            let key = reader.required("key") { value throws(ConfigError) in try value.path(relativeTo: directory) }
            reader.finish()
            let listsHosts = (reader.entry("hosts")?.value.listCount ?? 0) > 0
            if !listsHosts {
                if let defaultEntry {
                    throw item.error(
                        "only one certificate may leave out hosts (the default certificate), and \(defaultEntry) already does"
                    )
                }
                defaultEntry = item.keyPath
            }
            guard let certificate, let key else { return nil }
            return CertificateConfig(hosts: hosts, certificate: certificate, key: key)
        }
        guard value.listCount ?? 0 > 0 else {
            throw value.error("must list at least one certificate")
        }
        return entries.compactMap { $0 }
    }

    private static func edgeLimits(_ value: ValueNode) throws(ConfigError) -> EdgeLimits {
        var reader = try value.mapping()
        let defaults = EdgeLimits()
        let limits = EdgeLimits(
            maxHeaderBytes: reader.optional("maxHeaderBytes", default: defaults.maxHeaderBytes) { value throws(ConfigError) in
                try value.int(in: 1024...1_048_576)
            },
            maxHeaderCount: reader.optional("maxHeaderCount", default: defaults.maxHeaderCount) { value throws(ConfigError) in
                try value.int(in: 8...10_000)
            },
            maxRequestLineBytes: reader.optional("maxRequestLineBytes", default: defaults.maxRequestLineBytes) { value throws(ConfigError) in
                try value.int(in: 256...1_048_576)
            },
            headerReadTimeout: reader.optional("headerReadTimeout", default: defaults.headerReadTimeout) { value throws(ConfigError) in
                try value.duration()
            },
            idleTimeout: reader.optional("idleTimeout", default: defaults.idleTimeout) { value throws(ConfigError) in
                try value.duration()
            },
            handshakeTimeout: reader.optional("handshakeTimeout", default: defaults.handshakeTimeout) { value throws(ConfigError) in
                try value.duration()
            },
            bodyReadTimeout: reader.optional("bodyReadTimeout", default: defaults.bodyReadTimeout) { value throws(ConfigError) in
                try value.duration()
            },
            minBodyRate: reader.optional("minBodyRate", default: defaults.minBodyRate) { value throws(ConfigError) in
                try value.int(in: 0...1_000_000_000)
            },
            sendTimeout: reader.optional("sendTimeout", default: defaults.sendTimeout) { value throws(ConfigError) in
                try value.duration()
            },
            maxConnections: reader.optional("maxConnections", default: defaults.maxConnections) { value throws(ConfigError) in
                try value.int(in: 1...10_000_000)
            },
            maxConnectionsPerClient: reader.optional("maxConnectionsPerClient", default: defaults.maxConnectionsPerClient) {
                value throws(ConfigError) in try value.int(in: 1...10_000_000)
            }
        )
        reader.finish()
        return limits
    }

    private struct TunnelSection {
        var listen: HostPort?
        var onPublicPort: Bool
        var address: HostPort?
        var certificate: String
        var key: String
        var liveness: TunnelLiveness
    }

    private static func tunnelSection(_ value: ValueNode, directory: String) throws(ConfigError) -> TunnelSection? {
        var reader = try value.mapping()
        let onPublicPort = reader.optional("onPublicPort", default: false) { value throws(ConfigError) in try value.bool() }
        let listen =
            onPublicPort
            ? reader.optional("listen") { value throws(ConfigError) in try value.hostPort(allowZeroPort: true) }
            : reader.required("listen") { value throws(ConfigError) in try value.hostPort(allowZeroPort: true) }
        let address = reader.optional("address") { value throws(ConfigError) in try value.hostPort(allowZeroPort: false) }
        if onPublicPort {
            // Connectors are told apart from users by the name they ask for: it must be a name, and stated.
            if address == nil, reader.keyMark("address") == nil {
                value.diagnostics.report(
                    reader.errorAtKey("address", "is required with onPublicPort: the host name (and public port) connectors dial, e.g. tunnel.example.com:443; TLS tells them from users by this name")
                )
            } else if let address, Names.isIPv4(address.host) || Names.isIPv6(address.host) {
                value.diagnostics.report(
                    reader.errorAtKey("address", "must be a host name with onPublicPort (connectors are told apart by the name they send in TLS; an IP address sends none)")
                )
            }
        }
        let certificate = reader.required("certificate") { value throws(ConfigError) in try value.path(relativeTo: directory) }
        let key = reader.required("key") { value throws(ConfigError) in try value.path(relativeTo: directory) }
        let liveness = reader.optional("liveness", default: TunnelLiveness()) { value throws(ConfigError) in try value.liveness() }
        if reader.keyMark("clientCA") != nil {
            _ = reader.optional("clientCA") { value throws(ConfigError) -> Void in
                throw value.error(
                    "is replaced by the relay's connector CA (connectors.ca, made by `sallyport relay init`) and, for certificates from your own CA, connectors.trustedCAs with `sallyport connectors add`; see docs/deployment.md"
                )
            }
        }
        reader.finish()
        guard listen != nil || onPublicPort, let certificate, let key else { return nil }
        return TunnelSection(listen: listen, onPublicPort: onPublicPort, address: address, certificate: certificate, key: key, liveness: liveness)
    }

    private static func connectorPolicy(_ value: ValueNode, directory: String) throws(ConfigError) -> ConnectorPolicy {
        var reader = try value.mapping()
        let defaults = ConnectorPolicy()
        let ca = reader.optional("ca") { value throws(ConfigError) -> (String, String)? in
            var ca = try value.mapping()
            let certificate = ca.required("certificate") { value throws(ConfigError) in try value.path(relativeTo: directory) }
            let key = ca.required("key") { value throws(ConfigError) in try value.path(relativeTo: directory) }
            ca.finish()
            guard let certificate, let key else { return nil }
            return (certificate, key)
        } ?? nil
        let lifetime = reader.optional("certificateLifetime", default: defaults.certificateLifetime) { value throws(ConfigError) in
            let duration = try value.duration()
            guard duration >= .seconds(10) else { throw value.error("must be at least 10s") }
            return duration
        }
        let inactiveAfter = reader.optional("inactiveAfter", default: defaults.inactiveAfter) { value throws(ConfigError) in try value.duration() }
        let removeAfter = reader.optional("removeAfter", default: defaults.removeAfter) { value throws(ConfigError) in try value.duration() }
        let trusted = reader.optional("trustedCAs", default: []) { value throws(ConfigError) in
            try value.list { item throws(ConfigError) in try item.path(relativeTo: directory) }
        }
        reader.finish()
        return ConnectorPolicy(
            caCertificate: ca?.0, caKey: ca?.1, certificateLifetime: lifetime, inactiveAfter: inactiveAfter, removeAfter: removeAfter,
            trustedCAs: trusted
        )
    }
}

/// The `admin.listen` key of the relay and connector files: `host:port`, or `none`.
enum AdminListen {
    static let defaultRelay: HostPort? = HostPort(host: "127.0.0.1", port: 9180)

    static func parse(_ value: ValueNode) throws(ConfigError) -> HostPort? {
        if (try? value.string()) == "none" { return nil }
        return try value.hostPort(allowZeroPort: true)
    }
}
