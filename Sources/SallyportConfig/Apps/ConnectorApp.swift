/// What a connector needs of a published app, as the relay sends it over the tunnel.
///
/// Only what the connector uses: no pre-authentication rules, no external host. Where each key stood in the
/// app's file travels along (``source``) so a connector can name file, line and key in its errors, but it
/// takes no part in equality: an edit that moves lines or changes a comment is not a change for a connector.
public struct ConnectorApp: Sendable, Codable, Hashable {
    /// The app's name; requests name it in the `sallyport-app` tunnel field.
    public var name: String
    /// The external path prefix (`/` or `/hr/`); the connector maps it onto ``internalURL``'s path.
    public var externalPathPrefix: String
    /// Where the connector sends the app's requests.
    public var internalURL: InternalURL
    /// false: the backend sees the internal host in `Host`; true: the external one.
    public var preserveHost: Bool
    /// Backend timeouts.
    public var timeouts: AppTimeouts
    /// Trust settings for an `https://` internal URL; nil uses the system trust store.
    public var backendTLS: BackendTLS?
    /// Whether the relay authenticates users of this app, and so sends their identity with each request.
    public var sendsIdentity: Bool
    /// The SSO handler and its settings.
    public var sso: SSO
    /// Where the app came from, for error messages.
    public var source: Source
    /// false: no access log lines for this app. Sent only when false (older connectors ignore it).
    public var accessLog: Bool?
    /// Whether requests of this app get access log lines (`accessLog`, default true).
    public var logsAccess: Bool { self.accessLog ?? true }
    /// true: access log lines show the query too (`accessLog: withQuery`). Sent only when true.
    public var accessLogQuery: Bool?

    /// An app's single-sign-on step as the connector runs it.
    public struct SSO: Sendable, Codable, Hashable {
        /// Handler name, e.g. `passthrough`, `header`, `kcd` or a plugin's.
        public var handler: String
        /// Every key under `sso:` except `handler`, as written.
        public var settings: [String: ConfigValue]

        /// Creates SSO settings; the default forwards requests unchanged.
        public init(handler: String = "passthrough", settings: [String: ConfigValue] = [:]) {
            self.handler = handler
            self.settings = settings
        }
    }

    /// The app's file and where its keys are in it. Every instance compares equal.
    public struct Source: Sendable, Codable, Hashable {
        /// The file's path on the relay (empty for apps built in code).
        public var file: String
        /// Where each top-level key, `sso.handler` and each `sso.<setting>` is.
        public var positions: [String: Position]

        /// A key's place in the file.
        public struct Position: Sendable, Codable, Hashable {
            /// 1-based line.
            public var line: Int
            /// 1-based column, when known.
            public var column: Int?

            /// Creates a position.
            public init(line: Int, column: Int? = nil) {
                self.line = line
                self.column = column
            }
        }

        /// Creates a source.
        public init(file: String = "", positions: [String: Position] = [:]) {
            self.file = file
            self.positions = positions
        }

        public static func == (lhs: Source, rhs: Source) -> Bool { true }
        public func hash(into hasher: inout Hasher) {}
    }

    /// Creates an app in code (tests); the relay makes them with ``AppConfig/forConnector``.
    public init(
        name: String,
        externalPathPrefix: String = "/",
        internalURL: InternalURL,
        preserveHost: Bool = false,
        timeouts: AppTimeouts = AppTimeouts(),
        backendTLS: BackendTLS? = nil,
        sendsIdentity: Bool = false,
        sso: SSO = SSO(),
        source: Source = Source(),
        accessLog: Bool? = nil,
        accessLogQuery: Bool? = nil
    ) {
        self.name = name
        self.externalPathPrefix = externalPathPrefix
        self.internalURL = internalURL
        self.preserveHost = preserveHost
        self.timeouts = timeouts
        self.backendTLS = backendTLS
        self.sendsIdentity = sendsIdentity
        self.sso = sso
        self.source = source
        self.accessLog = accessLog
        self.accessLogQuery = accessLogQuery
    }

    /// An error about this app at `key` (`sso`, `sso.handler`, `sso.<setting>.<...>` or a top-level key), with
    /// the place of the key or of its nearest enclosing key that is known.
    public func error(at key: String, _ message: String) -> ConfigError {
        var probe = Substring(key)
        var position = self.source.positions[key]
        while position == nil, let dot = probe.lastIndex(of: ".") {
            probe = probe[..<dot]
            position = self.source.positions[String(probe)]
        }
        return ConfigError(file: self.source.file, line: position?.line, column: position?.column, key: key, message: message)
    }
}

extension AppConfig {
    /// This app as connectors receive it.
    public var forConnector: ConnectorApp {
        var positions = self.keyPositions.positions.mapValues { ConnectorApp.Source.Position(line: $0.line, column: $0.column) }
        for (setting, position) in self.sso.settingPositions { positions["sso.\(setting)"] = position }
        return ConnectorApp(
            name: self.name,
            externalPathPrefix: self.externalURL.pathPrefix,
            internalURL: self.internalURL,
            preserveHost: self.preserveHost,
            timeouts: self.timeouts,
            backendTLS: self.backendTLS,
            sendsIdentity: self.preAuthentication != .passthrough,
            sso: ConnectorApp.SSO(handler: self.sso.handler, settings: self.sso.settings),
            source: ConnectorApp.Source(file: self.sourceFile, positions: positions),
            accessLog: self.accessLog ? nil : false,
            accessLogQuery: self.accessLogQuery ? true : nil
        )
    }
}
