internal import Foundation

/// An identity provider the relay trusts, by the name apps use in `preAuthentication.provider`.
public struct IdentityProviderConfig: Sendable, Hashable {
    /// The key under `identityProviders`.
    public var name: String
    /// OIDC sign-in or trusted JWTs, with the settings of that kind.
    public var kind: Kind
    /// Which claims make the identity the connector receives.
    public var claims: ClaimMapping
    /// Clock difference tolerated on `exp`, `nbf` and `iat`. Default 60s.
    public var clockSkew: Duration
    /// PEM CA bundle for the provider's HTTPS endpoints instead of the system store.
    public var caFile: String?
    /// `algorithms`: the token signing algorithms accepted; nil takes each key's own `alg`, or for a key
    /// without one the algorithm its type implies (RS256 for RSA). Never the token's choice.
    public var algorithms: [String]?

    /// The signing algorithms `algorithms` may name.
    public static let signingAlgorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]

    /// The two kinds of provider.
    public enum Kind: Sendable, Hashable {
        case oidc(OIDCSettings)
        case jwt(JWTSettings)
    }

    /// The authentication method apps use to select this kind of provider.
    public var method: AuthenticationMethod {
        switch kind {
        case .oidc: .oidc
        case .jwt: .jwt
        }
    }

    /// Creates a provider configuration.
    public init(
        name: String, kind: Kind, claims: ClaimMapping = ClaimMapping(), clockSkew: Duration = .seconds(60), caFile: String? = nil,
        algorithms: [String]? = nil
    ) {
        self.name = name
        self.kind = kind
        self.claims = claims
        self.clockSkew = clockSkew
        self.caFile = caFile
        self.algorithms = algorithms
    }
}

/// OpenID Connect sign-in with the authorization code flow and PKCE.
public struct OIDCSettings: Sendable, Hashable {
    /// The issuer URL; `/.well-known/openid-configuration` under it is the discovery document.
    public var issuer: String
    /// The client id registered at the provider.
    public var clientID: String
    /// File holding the client secret (its only content; surrounding whitespace is ignored).
    public var clientSecretFile: String
    /// Scopes requested; always includes `openid`. Default `openid profile email`.
    public var scopes: [String]
    /// How the relay authenticates at the token endpoint.
    public var tokenEndpointAuth: TokenEndpointAuth

    /// Client authentication methods at the token endpoint (RFC 6749 §2.3.1).
    public enum TokenEndpointAuth: String, Sendable, Hashable, CaseIterable {
        case clientSecretBasic = "client_secret_basic"
        case clientSecretPost = "client_secret_post"
    }

    /// Creates OIDC settings.
    public init(
        issuer: String,
        clientID: String,
        clientSecretFile: String,
        scopes: [String] = ["openid", "profile", "email"],
        tokenEndpointAuth: TokenEndpointAuth = .clientSecretBasic
    ) {
        self.issuer = issuer
        self.clientID = clientID
        self.clientSecretFile = clientSecretFile
        self.scopes = scopes
        self.tokenEndpointAuth = tokenEndpointAuth
    }
}

/// Trusted JWTs presented by API clients or set by an identity-aware gateway in front of the relay.
public struct JWTSettings: Sendable, Hashable {
    /// The issuers whose tokens are accepted, each with its keys.
    public var issuers: [TrustedIssuer]
    /// Accepted `aud` values; a token must name at least one.
    public var audiences: [String]
    /// Where the token is read from.
    public var token: TokenSource

    /// One issuer and where its signing keys are.
    public struct TrustedIssuer: Sendable, Hashable {
        /// The exact `iss` value.
        public var issuer: String
        /// Where the issuer's JWKS is.
        public var keys: KeySource

        /// Creates a trusted issuer.
        public init(issuer: String, keys: KeySource) {
            self.issuer = issuer
            self.keys = keys
        }
    }

    /// A JWKS fetched over HTTPS or read from a file; both are re-read when a token names an unknown key.
    public enum KeySource: Sendable, Hashable {
        case url(String)
        case file(String)
    }

    /// The header that carries the token.
    public enum TokenSource: Sendable, Hashable {
        /// `Authorization: Bearer <token>`.
        case authorizationBearer
        /// A named header whose whole value is the token (e.g. `X-Goog-IAP-JWT-Assertion`).
        case header(String)
    }

    /// Creates JWT settings.
    public init(issuers: [TrustedIssuer], audiences: [String], token: TokenSource = .authorizationBearer) {
        self.issuers = issuers
        self.audiences = audiences
        self.token = token
    }
}

/// Which token claims make the user's identity.
public struct ClaimMapping: Sendable, Hashable, Codable {
    /// Claims tried in order for the user principal name. Default `upn`, `preferred_username`, `email`.
    public var userPrincipalName: [String]
    /// The claim listing the user's groups. Default `groups`.
    public var groups: String
    /// The claim with the email address. Default `email`.
    public var email: String
    /// The claim with the display name. Default `name`.
    public var displayName: String
    /// Other claims passed on to the connector as they are.
    public var keep: [String]

    /// Creates a mapping; each part defaults to the documented value.
    public init(
        userPrincipalName: [String] = ["upn", "preferred_username", "email"],
        groups: String = "groups",
        email: String = "email",
        displayName: String = "name",
        keep: [String] = []
    ) {
        self.userPrincipalName = userPrincipalName
        self.groups = groups
        self.email = email
        self.displayName = displayName
        self.keep = keep
    }
}

/// The relay's sign-in sessions (cookies).
public struct SessionConfig: Sendable, Hashable {
    /// File with the 32-byte cookie key, base64; several relays behind one name share it. Nil: a random key
    /// per relay process (sessions end when it restarts).
    public var keyFile: String?
    /// Absolute lifetime of a session. Default 8h.
    public var lifetime: Duration
    /// A session unused this long ends. Default 1h.
    public var idleTimeout: Duration

    /// Creates session settings.
    public init(keyFile: String? = nil, lifetime: Duration = .seconds(8 * 3600), idleTimeout: Duration = .seconds(3600)) {
        self.keyFile = keyFile
        self.lifetime = lifetime
        self.idleTimeout = idleTimeout
    }
}

/// Reads `identityProviders` and `sessions` of the relay file.
enum IdentityProviderSection {
    static func providers(_ value: ValueNode, directory: String) throws(ConfigError) -> [IdentityProviderConfig] {
        var reader = try value.mapping()
        var providers: [IdentityProviderConfig] = []
        for entry in reader.takeRemaining() {
            guard Names.isValidName(entry.key) else {
                value.diagnostics.report(value.diagnostics.error(at: entry.keyMark, key: entry.value.keyPath, "provider names: \(Names.nameRule)"))
                continue
            }
            do throws(ConfigError) {
                if let provider = try provider(name: entry.key, entry.value, directory: directory) { providers.append(provider) }
            } catch {
                value.diagnostics.report(error)
            }
        }
        return providers.sorted { $0.name < $1.name }
    }

    private static func provider(name: String, _ value: ValueNode, directory: String) throws(ConfigError) -> IdentityProviderConfig? {
        var reader = try value.mapping()
        let type = reader.required("type") { value throws(ConfigError) -> String in
            let text = try value.string()
            guard text == "oidc" || text == "jwt" else { throw value.error("must be oidc or jwt (got \(quoted(text)))") }
            return text
        }
        let claims = reader.optional("claims", default: ClaimMapping(), claimMapping)
        let clockSkew = reader.optional("clockSkew", default: .seconds(60)) { value throws(ConfigError) in try value.duration(allowZero: true) }
        let caFile = reader.optional("caFile") { value throws(ConfigError) in try value.path(relativeTo: directory) }
        let algorithms = reader.optional("algorithms") { value throws(ConfigError) -> [String] in
            let names = try value.list { item throws(ConfigError) -> String in
                let text = try item.string()
                guard IdentityProviderConfig.signingAlgorithms.contains(text) else {
                    throw item.error("must be one of \(IdentityProviderConfig.signingAlgorithms.joined(separator: ", ")) (got \(quoted(text)))")
                }
                return text
            }
            guard !names.isEmpty else { throw value.error("must list at least one algorithm, or be left out") }
            return names
        }
        var kind: IdentityProviderConfig.Kind?
        switch type {
        case "oidc":
            let issuer = reader.required("issuer") { value throws(ConfigError) in try issuerURL(value) }
            let clientID = reader.required("clientID") { value throws(ConfigError) in try value.nonEmptyString() }
            let secretFile = reader.required("clientSecretFile") { value throws(ConfigError) in try value.path(relativeTo: directory) }
            let scopes = reader.optional("scopes", default: ["openid", "profile", "email"]) { value throws(ConfigError) in
                let scopes = try value.list { item throws(ConfigError) in try scope(item) }
                return scopes.contains("openid") ? scopes : ["openid"] + scopes
            }
            let auth = reader.optional("tokenEndpointAuth", default: .clientSecretBasic) { value throws(ConfigError) -> OIDCSettings.TokenEndpointAuth in
                let text = try value.string()
                guard let auth = OIDCSettings.TokenEndpointAuth(rawValue: text) else {
                    throw value.error("must be client_secret_basic or client_secret_post (got \(quoted(text)))")
                }
                return auth
            }
            if let issuer, let clientID, let secretFile {
                kind = .oidc(OIDCSettings(issuer: issuer, clientID: clientID, clientSecretFile: secretFile, scopes: scopes, tokenEndpointAuth: auth))
            }
        case "jwt":
            let issuers = reader.required("issuers") { value throws(ConfigError) in
                var seen: Set<String> = []
                let issuers = try value.list { item throws(ConfigError) in
                    let issuer = try trustedIssuer(item, directory: directory)
                    if let name = issuer?.issuer, !seen.insert(name).inserted {
                        throw item.error("the issuer \(quoted(name)) is listed twice; list each issuer once")
                    }
                    return issuer
                }
                guard value.listCount ?? 0 > 0 else { throw value.error("must list at least one issuer") }
                return issuers.compactMap { $0 }
            }
            let audiences = reader.required("audiences") { value throws(ConfigError) in
                let audiences = try value.list { item throws(ConfigError) in try item.nonEmptyString() }
                guard !audiences.isEmpty else { throw value.error("must list at least one audience") }
                return audiences
            }
            let token = reader.optional("token", default: .authorizationBearer, tokenSource)
            if let issuers, let audiences { kind = .jwt(JWTSettings(issuers: issuers, audiences: audiences, token: token)) }
        default:
            // The type is missing or wrong (already reported): take the other keys so they are not also unknown.
            _ = reader.takeRemaining()
        }
        reader.finish()
        guard let kind else { return nil }
        return IdentityProviderConfig(name: name, kind: kind, claims: claims, clockSkew: clockSkew, caFile: caFile, algorithms: algorithms)
    }

    /// An issuer or JWKS URL: https, or http on a loopback address (a provider on the relay's own host).
    static func issuerURL(_ value: ValueNode) throws(ConfigError) -> String {
        let text = try value.nonEmptyString()
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), let host = url.host, !host.isEmpty,
            url.query == nil, url.fragment == nil
        else {
            throw value.error("must be an https:// URL without query or fragment (got \(quoted(text)))")
        }
        let loopback = ["127.0.0.1", "localhost", "::1", "[::1]"].contains(host.lowercased())
        guard scheme == "https" || (scheme == "http" && loopback) else {
            throw value.error("must use https:// (plain http is allowed only on a loopback address) (got \(quoted(text)))")
        }
        return text
    }

    private static func scope(_ value: ValueNode) throws(ConfigError) -> String {
        let text = try value.nonEmptyString()
        guard !text.contains(where: { $0 == " " || $0 == "\"" || $0 == "\\" || !$0.isASCII }) else {
            throw value.error("a scope is one word of visible ASCII characters (got \(quoted(text)))")
        }
        return text
    }

    private static func trustedIssuer(_ value: ValueNode, directory: String) throws(ConfigError) -> JWTSettings.TrustedIssuer? {
        var reader = try value.mapping()
        let issuer = reader.required("issuer") { value throws(ConfigError) in try value.nonEmptyString() }
        let url = reader.optional("jwksURL") { value throws(ConfigError) in try issuerURL(value) }
        let file = reader.optional("jwksFile") { value throws(ConfigError) in try value.path(relativeTo: directory) }
        reader.finish()
        let keys: JWTSettings.KeySource
        switch (url, file) {
        case (let url?, nil): keys = .url(url)
        case (nil, let file?): keys = .file(file)
        case (.some, .some): throw reader.errorAtKey("jwksFile", "set either jwksURL or jwksFile, not both")
        case (nil, nil):
            if reader.keyMark("jwksURL") != nil || reader.keyMark("jwksFile") != nil { return nil }
            throw reader.errorAtKey("jwksURL", "required: set jwksURL (the issuer's JWKS over https) or jwksFile")
        }
        guard let issuer else { return nil }
        return JWTSettings.TrustedIssuer(issuer: issuer, keys: keys)
    }

    private static func tokenSource(_ value: ValueNode) throws(ConfigError) -> JWTSettings.TokenSource {
        var reader = try value.mapping()
        let header = reader.required("header") { value throws(ConfigError) in
            let text = try value.nonEmptyString()
            guard text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_".contains($0)) }) else {
                throw value.error("must be a header name like \"Authorization\" or \"X-Goog-IAP-JWT-Assertion\" (got \(quoted(text)))")
            }
            return text
        }
        reader.finish()
        guard let header else { return .authorizationBearer }
        return header.lowercased() == "authorization" ? .authorizationBearer : .header(header)
    }

    private static func claimMapping(_ value: ValueNode) throws(ConfigError) -> ClaimMapping {
        var reader = try value.mapping()
        let defaults = ClaimMapping()
        let claimName = { (value: ValueNode) throws(ConfigError) -> String in try value.nonEmptyString() }
        let mapping = ClaimMapping(
            userPrincipalName: reader.optional("userPrincipalName", default: defaults.userPrincipalName) { value throws(ConfigError) in
                guard value.listCount != nil else { return [try value.nonEmptyString()] }
                guard value.listCount! > 0 else { throw value.error("must name at least one claim, e.g. [upn, preferred_username]") }
                return try value.list(claimName)
            },
            groups: reader.optional("groups", default: defaults.groups, claimName),
            email: reader.optional("email", default: defaults.email, claimName),
            displayName: reader.optional("displayName", default: defaults.displayName, claimName),
            keep: reader.optional("keep", default: defaults.keep) { value throws(ConfigError) in try value.list(claimName) }
        )
        reader.finish()
        return mapping
    }

    static func sessions(_ value: ValueNode, directory: String) throws(ConfigError) -> SessionConfig {
        var reader = try value.mapping()
        let defaults = SessionConfig()
        let config = SessionConfig(
            keyFile: reader.optional("keyFile") { value throws(ConfigError) in try value.path(relativeTo: directory) },
            lifetime: reader.optional("lifetime", default: defaults.lifetime) { value throws(ConfigError) in try value.duration() },
            idleTimeout: reader.optional("idleTimeout", default: defaults.idleTimeout) { value throws(ConfigError) in try value.duration() }
        )
        reader.finish()
        if config.idleTimeout > config.lifetime {
            throw reader.errorAtKey("idleTimeout", "is longer than lifetime (\(config.lifetime)); a session can never be idle that long")
        }
        return config
    }
}
