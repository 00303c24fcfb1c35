/// One published app: the contents of one file in the relay's apps directory.
public struct AppConfig: Sendable, Codable, Hashable {
    /// Unique app name: `[a-z0-9][a-z0-9-]{0,62}`.
    public var name: String
    /// Where users reach the app on the relay.
    public var externalURL: ExternalURL
    /// Where the connector sends the app's requests.
    public var internalURL: InternalURL
    /// The connectors that serve this app: those whose `group` matches.
    public var connectorGroup: String
    /// How the relay authenticates users before a request enters the tunnel.
    public var preAuthentication: PreAuthentication
    /// How the connector signs the user in to the backend.
    public var sso: SSOConfig
    /// Backend timeouts applied by the connector.
    public var timeouts: AppTimeouts
    /// Trust settings for an `https://` internal URL; nil uses the connector's system trust store.
    public var backendTLS: BackendTLS?
    /// false: the backend sees the internal host in `Host`; true: it sees the external host.
    public var preserveHost: Bool
    /// The file this app came from (empty for apps built in code).
    public var sourceFile: String

    /// Where each top-level key was in `sourceFile`, for errors found after parsing (cross-file conflicts).
    /// Not part of equality, hashing or coding.
    var keyPositions = KeyPositions()

    /// Creates an app in code (tests, the demo); the loaders build it from YAML.
    public init(
        name: String,
        externalURL: ExternalURL,
        internalURL: InternalURL,
        connectorGroup: String = "default",
        preAuthentication: PreAuthentication = .passthrough,
        sso: SSOConfig = SSOConfig(),
        timeouts: AppTimeouts = AppTimeouts(),
        backendTLS: BackendTLS? = nil,
        preserveHost: Bool = false,
        sourceFile: String = ""
    ) {
        self.name = name
        self.externalURL = externalURL
        self.internalURL = internalURL
        self.connectorGroup = connectorGroup
        self.preAuthentication = preAuthentication
        self.sso = sso
        self.timeouts = timeouts
        self.backendTLS = backendTLS
        self.preserveHost = preserveHost
        self.sourceFile = sourceFile
    }

    private enum CodingKeys: String, CodingKey {
        case name, externalURL, internalURL, connectorGroup, preAuthentication, sso, timeouts, backendTLS, preserveHost, sourceFile
    }
}

/// Source positions carried beside a parsed value; every instance compares equal so they never make two
/// otherwise identical configs differ.
struct KeyPositions: Sendable, Hashable {
    struct Position: Sendable {
        var line: Int
        var column: Int
    }

    var positions: [String: Position] = [:]

    static func == (lhs: KeyPositions, rhs: KeyPositions) -> Bool { true }
    func hash(into hasher: inout Hasher) {}

    subscript(key: String) -> Position? { positions[key] }
}

/// How the relay authenticates a user before forwarding a request into the tunnel.
///
/// In YAML: `preAuthentication: passthrough`. More methods (OIDC, JWT) will be added as cases.
public enum PreAuthentication: Sendable, Codable, Hashable {
    /// No authentication at the relay: the backend (or SSO handler) authenticates the user.
    case passthrough

    /// The values accepted in YAML, in the order shown in errors.
    static let configNames = ["passthrough"]

    init?(configName: String) {
        switch configName {
        case "passthrough": self = .passthrough
        default: return nil
        }
    }
}

/// The single-sign-on handler the connector runs for an app, with its handler-specific settings.
public struct SSOConfig: Sendable, Codable, Hashable {
    /// Handlers that ship with Sallyport; others may be registered by plugins, so the loader does not reject them.
    public static let builtInHandlers: Set<String> = ["passthrough"]

    /// Handler name, e.g. "passthrough".
    public var handler: String
    /// Every key under `sso:` except `handler`, as written.
    public var settings: [String: ConfigValue]
    /// The line of each key in `settings`, so a handler factory can report errors in place.
    public var settingLines: [String: Int]

    /// Creates an SSO configuration; the default forwards requests unchanged.
    public init(handler: String = "passthrough", settings: [String: ConfigValue] = [:], settingLines: [String: Int] = [:]) {
        self.handler = handler
        self.settings = settings
        self.settingLines = settingLines
    }
}

/// Timeouts the connector applies to an app's backend.
public struct AppTimeouts: Sendable, Codable, Hashable {
    /// TCP (and TLS) connect to the backend. Default 10s.
    public var connect: Duration
    /// From the last byte of the request to the response head; a long upload does not count. Default 60s.
    public var response: Duration
    /// Longest silence, in both directions, on a backend connection in use. Default 300s.
    public var idle: Duration

    /// Creates timeouts; each defaults to the documented value.
    public init(connect: Duration = .seconds(10), response: Duration = .seconds(60), idle: Duration = .seconds(300)) {
        self.connect = connect
        self.response = response
        self.idle = idle
    }
}

/// How the connector verifies an `https://` backend.
public struct BackendTLS: Sendable, Codable, Hashable {
    /// Absolute path, on the connector host, of a PEM CA bundle to trust instead of the system store.
    public var caFile: String?
    /// An inline PEM CA bundle to trust instead of the system store.
    public var caPEM: String?
    /// The name to send as SNI and to verify on the backend's certificate; nil means the internal URL's host.
    public var serverName: String?

    /// Creates backend TLS settings; with nothing set, the system trust store and the internal host are used.
    public init(caFile: String? = nil, caPEM: String? = nil, serverName: String? = nil) {
        self.caFile = caFile
        self.caPEM = caPEM
        self.serverName = serverName
    }
}
