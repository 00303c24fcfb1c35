/// relay.yaml's `store`: where the relay keeps connectors, groups, tokens and certificates.
public enum StoreConfig: Sendable, Hashable {
    /// The embedded SQLite file in the state directory (the default): one relay.
    case sqlite
    /// A PostgreSQL database that several relays share.
    case postgres(PostgresConfig)
}

/// `store.postgres`: the database several relays share.
public struct PostgresConfig: Sendable, Hashable {
    /// How the connection to the database is protected (libpq's `sslmode` names).
    public enum TLS: String, Sendable, Hashable, CaseIterable {
        /// Plain TCP: only for a database on the relay's own host or an equally trusted network.
        case disable
        /// Encrypted, but any certificate is accepted.
        case require
        /// Encrypted, and the server's certificate must be valid for `host` (from `caFile`, else the system's
        /// trust store). The default.
        case verifyFull = "verify-full"
    }

    /// `host`: the server's name or address.
    public var host: String
    /// `port`. Default 5432.
    public var port: Int
    /// `database`. Default `sallyport`.
    public var database: String
    /// `user`. Default `sallyport`.
    public var user: String
    /// `passwordFile`: a file whose first line is the password; nil for a server that asks for none.
    public var passwordFile: String?
    /// `tls`. Default `verify-full`.
    public var tls: TLS
    /// `caFile`: the CA (PEM) that issued the server's certificate, for `verify-full`.
    public var caFile: String?
    /// `maxConnections`: the relay's connections to the database at most. Default 10.
    public var maxConnections: Int

    /// Creates a configuration; each value defaults to the documented one.
    public init(
        host: String, port: Int = 5432, database: String = "sallyport", user: String = "sallyport", passwordFile: String? = nil,
        tls: TLS = .verifyFull, caFile: String? = nil, maxConnections: Int = 10
    ) {
        self.host = host
        self.port = port
        self.database = database
        self.user = user
        self.passwordFile = passwordFile
        self.tls = tls
        self.caFile = caFile
        self.maxConnections = maxConnections
    }
}

extension RelayFile {
    static func store(_ value: ValueNode, directory: String) throws(ConfigError) -> StoreConfig {
        if let text = try? value.string() {
            guard text == "sqlite" else {
                throw value.error("must be sqlite (the default) or a mapping with postgres: {host, database, user, passwordFile, …} (got \(quoted(text)))")
            }
            return .sqlite
        }
        var reader = try value.mapping()
        let postgres = reader.optional("postgres") { value throws(ConfigError) -> PostgresConfig? in
            try Self.postgres(value, directory: directory)
        } ?? nil
        let hasSQLite = reader.keyMark("sqlite") != nil
        if hasSQLite {
            _ = reader.optional("sqlite") { value throws(ConfigError) -> Void in
                throw value.error("takes no settings: the SQLite file is relay.db in the state directory; write store: sqlite")
            }
        }
        reader.finish()
        guard reader.keyMark("postgres") != nil || hasSQLite else {
            throw value.error("must be sqlite (the default) or a mapping with postgres: {host, database, user, passwordFile, …}")
        }
        return postgres.map(StoreConfig.postgres) ?? .sqlite
    }

    private static func postgres(_ value: ValueNode, directory: String) throws(ConfigError) -> PostgresConfig? {
        var reader = try value.mapping()
        let defaults = PostgresConfig(host: "")
        let host = reader.required("host") { value throws(ConfigError) in
            let host = try value.nonEmptyString()
            guard Names.isValidDNSName(host) || Names.isIPv4(host) || Names.isIPv6(host) else {
                throw value.error("must be a host name or an IP address (got \(quoted(host)))")
            }
            return host
        }
        let port = reader.optional("port", default: defaults.port) { value throws(ConfigError) in try value.int(in: 1...65535) }
        let database = reader.optional("database", default: defaults.database) { value throws(ConfigError) in try value.nonEmptyString() }
        let user = reader.optional("user", default: defaults.user) { value throws(ConfigError) in try value.nonEmptyString() }
        let passwordFile = reader.optional("passwordFile") { value throws(ConfigError) in try value.path(relativeTo: directory) }
        if reader.keyMark("password") != nil {
            _ = reader.optional("password") { value throws(ConfigError) -> Void in
                throw value.error("is not read from relay.yaml, so that the file can be shared and logged safely: put the password in a file (mode 0600) and name it in passwordFile")
            }
        }
        let tls = reader.optional("tls", default: defaults.tls) { value throws(ConfigError) in
            let text = try value.nonEmptyString()
            guard let tls = PostgresConfig.TLS(rawValue: text) else {
                throw value.error("must be one of: \(PostgresConfig.TLS.allCases.map(\.rawValue).joined(separator: ", ")) (got \(quoted(text)))")
            }
            return tls
        }
        let caFile = reader.optional("caFile") { value throws(ConfigError) in try value.path(relativeTo: directory) }
        if caFile != nil, tls != .verifyFull {
            value.diagnostics.report(reader.errorAtKey("caFile", "is only used with tls: verify-full (tls is \(tls.rawValue))"))
        }
        let maxConnections = reader.optional("maxConnections", default: defaults.maxConnections) { value throws(ConfigError) in
            try value.int(in: 2...1000)
        }
        reader.finish()
        guard let host else { return nil }
        return PostgresConfig(
            host: host, port: port, database: database, user: user, passwordFile: passwordFile, tls: tls, caFile: caFile,
            maxConnections: maxConnections
        )
    }
}
