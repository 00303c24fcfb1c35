/// The user the relay authenticated, as it reaches the connector and its SSO handlers.
///
/// The relay builds it from the ID token or trusted JWT, after checking signature, issuer, audience and
/// lifetime; it crosses the tunnel in tunnel-private metadata that clients cannot set. Values are as the
/// identity provider issued them, mapped by the relay's `claims` settings.
public struct Identity: Sendable, Hashable, Codable {
    /// The user principal name, e.g. `alice@corp.example.com` (from `upn`, `preferred_username` or `email`
    /// by default). What Kerberos delegation and most header-based apps need.
    public var userPrincipalName: String
    /// The provider's stable subject identifier (`sub`).
    public var subject: String
    /// The token issuer (`iss`).
    public var issuer: String
    /// The relay's name for the identity provider that authenticated the user.
    public var provider: String
    /// Email address, when the provider gave one.
    public var email: String?
    /// Display name, when the provider gave one.
    public var displayName: String?
    /// Group names or ids, as the provider lists them.
    public var groups: [String]
    /// The other claims the relay was told to keep, each as a list of strings (a single value is a list of one;
    /// numbers and booleans are in their JSON spelling).
    public var claims: [String: [String]]

    /// Creates an identity.
    public init(
        userPrincipalName: String,
        subject: String,
        issuer: String,
        provider: String,
        email: String? = nil,
        displayName: String? = nil,
        groups: [String] = [],
        claims: [String: [String]] = [:]
    ) {
        self.userPrincipalName = userPrincipalName
        self.subject = subject
        self.issuer = issuer
        self.provider = provider
        self.email = email
        self.displayName = displayName
        self.groups = groups
        self.claims = claims
    }

    /// The value of a named attribute: `upn`, `sub`, `iss`, `provider`, `email`, `name`, `groups`, or a kept claim.
    public func values(of attribute: String) -> [String]? {
        switch attribute {
        case "upn": [userPrincipalName]
        case "sub": [subject]
        case "iss": [issuer]
        case "provider": [provider]
        case "email": email.map { [$0] } ?? []
        case "name": displayName.map { [$0] } ?? []
        case "groups": groups
        default: claims[attribute]
        }
    }
}
