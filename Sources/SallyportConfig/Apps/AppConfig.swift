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
    /// `allowEscapedPath`: true lets paths with `%2F`, `%5C`, `%2E` or a backslash through (for backends that
    /// need encoded slashes in paths); false (the default) answers them 400. The relay decides; connectors never
    /// see it.
    public var allowEscapedPath = false
    /// `allowWebSocket`: true (the default) lets a valid WebSocket handshake switch the user's connection to
    /// WebSocket; false answers WebSocket handshakes 403. The relay decides; connectors never see it.
    public var allowWebSocket = true
    /// `accessLog`: true (the default) writes a line per request to the access log on the relay and the
    /// connectors; false writes none for this app (metrics still count its requests).
    public var accessLog = true
    /// `accessLog: withQuery`: access log lines show the query string as well as the path (the default leaves
    /// it out: queries carry tokens and personal data).
    public var accessLogQuery = false

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

    /// An error about this app at `key` (a top-level key, `sso.handler` or `preAuthentication.provider`),
    /// with the key's line and column when the app came from a file.
    public func error(at key: String, _ message: String) -> ConfigError {
        Conflicts.error(in: self, key: key, message)
    }

    private enum CodingKeys: String, CodingKey {
        case name, externalURL, internalURL, connectorGroup, preAuthentication, sso, timeouts, backendTLS, preserveHost, sourceFile
        case keyPositions
    }

    /// Decodes an app as the relay sends it; key positions are optional (they only improve error messages).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.name = try container.decode(String.self, forKey: .name)
        self.externalURL = try container.decode(ExternalURL.self, forKey: .externalURL)
        self.internalURL = try container.decode(InternalURL.self, forKey: .internalURL)
        self.connectorGroup = try container.decode(String.self, forKey: .connectorGroup)
        self.preAuthentication = try container.decode(PreAuthentication.self, forKey: .preAuthentication)
        self.sso = try container.decode(SSOConfig.self, forKey: .sso)
        self.timeouts = try container.decode(AppTimeouts.self, forKey: .timeouts)
        self.backendTLS = try container.decodeIfPresent(BackendTLS.self, forKey: .backendTLS)
        self.preserveHost = try container.decode(Bool.self, forKey: .preserveHost)
        self.sourceFile = try container.decode(String.self, forKey: .sourceFile)
        self.keyPositions = try container.decodeIfPresent(KeyPositions.self, forKey: .keyPositions) ?? KeyPositions()
    }
}

/// Source positions carried beside a parsed value; every instance compares equal so they never make two
/// otherwise identical configs differ.
struct KeyPositions: Sendable, Hashable, Codable {
    struct Position: Sendable, Codable {
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
/// In YAML: `preAuthentication: passthrough`, `oidc` or `jwt`, or a mapping with `method`, `provider`,
/// `allowedUsers` and `allowedGroups`.
public enum PreAuthentication: Sendable, Hashable {
    /// No authentication at the relay: the backend (or SSO handler) authenticates the user.
    case passthrough
    /// The relay signs the user in (or checks their token) and applies the access rules.
    case authenticated(AccessPolicy)

    /// The values accepted for `method`, in the order shown in errors.
    static let configNames = ["passthrough", "oidc", "jwt"]

    /// The access policy, unless the app is passthrough.
    public var policy: AccessPolicy? {
        if case .authenticated(let policy) = self { return policy }
        return nil
    }
}

/// How users prove who they are at the relay.
public enum AuthenticationMethod: String, Sendable, Hashable, Codable, CaseIterable {
    /// Browser sign-in at an OpenID Connect provider; the relay keeps a session cookie.
    case oidc
    /// A signed JWT on each request, from an API client or an identity-aware gateway in front of the relay.
    case jwt
}

/// Who may use an authenticated app.
public struct AccessPolicy: Sendable, Hashable, Codable {
    /// OIDC or JWT.
    public var method: AuthenticationMethod
    /// The relay's provider by name; nil in a file means "the relay's only provider of this method", and the
    /// relay fills it in when it loads the app.
    public var provider: String?
    /// User principal names allowed in (compared without regard to case). Empty: no user rule.
    public var allowedUsers: [String]
    /// Groups allowed in (exact names or ids as the provider sends them). Empty: no group rule.
    public var allowedGroups: [String]

    /// Creates a policy; with no users and no groups, every authenticated user is allowed.
    public init(method: AuthenticationMethod, provider: String? = nil, allowedUsers: [String] = [], allowedGroups: [String] = []) {
        self.method = method
        self.provider = provider
        self.allowedUsers = allowedUsers
        self.allowedGroups = allowedGroups
    }

    /// Whether rules restrict the app to some users or groups.
    public var isRestricted: Bool { !allowedUsers.isEmpty || !allowedGroups.isEmpty }

    /// Whether a user with this principal name and these groups may use the app: listed by name, or in a
    /// listed group; anyone when no rule is set.
    public func allows(userPrincipalName: String, groups: [String]) -> Bool {
        guard isRestricted else { return true }
        let name = userPrincipalName.lowercased()
        if allowedUsers.contains(where: { $0.lowercased() == name }) { return true }
        return groups.contains { allowedGroups.contains($0) }
    }
}

/// A stable wire form (it crosses the tunnel): `{"method": "passthrough"}` or the policy's fields.
extension PreAuthentication: Codable {
    private enum CodingKeys: String, CodingKey { case method }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let method = try container.decode(String.self, forKey: .method)
        if method == "passthrough" {
            self = .passthrough
        } else {
            self = .authenticated(try AccessPolicy(from: decoder))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .passthrough:
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode("passthrough", forKey: .method)
        case .authenticated(let policy):
            try policy.encode(to: encoder)
        }
    }
}

/// The single-sign-on handler the connector runs for an app, with its handler-specific settings.
public struct SSOConfig: Sendable, Codable, Hashable {
    /// Handler name, e.g. "passthrough".
    public var handler: String
    /// Every key under `sso:` except `handler`, as written.
    public var settings: [String: ConfigValue]
    /// Where each key below `sso` is (`realm`, `headers.X-User`, `accounts[1].name`), so that handler errors
    /// name the line and column, and mappings keep the file's order.
    public var settingPositions: [String: ConnectorApp.Source.Position]

    /// Creates an SSO configuration; the default forwards requests unchanged.
    public init(
        handler: String = "passthrough", settings: [String: ConfigValue] = [:], settingPositions: [String: ConnectorApp.Source.Position] = [:]
    ) {
        self.handler = handler
        self.settings = settings
        self.settingPositions = settingPositions
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
    /// How long the app's SSO handler may take to decide, per call (prepare, inspect); past it the request is
    /// answered 504. Default 5s.
    public var sso: Duration

    /// Creates timeouts; each defaults to the documented value.
    public init(connect: Duration = .seconds(10), response: Duration = .seconds(60), idle: Duration = .seconds(300), sso: Duration = .seconds(5)) {
        self.connect = connect
        self.response = response
        self.idle = idle
        self.sso = sso
    }

    private enum CodingKeys: String, CodingKey { case connect, response, idle, sso }

    /// Decodes timeouts as the relay sends them; `sso` may be absent (a relay before it existed).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.connect = try container.decode(Duration.self, forKey: .connect)
        self.response = try container.decode(Duration.self, forKey: .response)
        self.idle = try container.decode(Duration.self, forKey: .idle)
        self.sso = try container.decodeIfPresent(Duration.self, forKey: .sso) ?? .seconds(5)
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
