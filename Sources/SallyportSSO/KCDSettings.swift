public import SallyportPluginAPI

/// `sso.handler: kcd`: Kerberos Constrained Delegation. The connector obtains a service ticket for the app's
/// SPN on the user's behalf (S4U2Self, then S4U2Proxy) and sends it as `Authorization: Negotiate`.
///
/// ```yaml
/// sso:
///   handler: kcd
///   spn: HTTP/payroll.corp.example.com
///   delegatedLoginIdentity: upn        # upn | upnUsername | samAccountName | claim:NAME
///   tokenFormat: spnego                # spnego | kerberos
///   sendAuthorization: always          # always | on401
///   mutualAuthentication: ifOffered    # ifOffered | required
/// ```
public struct KCDSettings: Sendable, Hashable {
    /// How the user's principal is formed from the identity.
    public enum LoginIdentity: Sendable, Hashable {
        case upn
        case upnUsername
        case samAccountName
        case claim(String)
    }

    /// What the token is: SPNEGO (`Negotiate`, what browsers send) or a raw Kerberos AP-REQ.
    public enum TokenFormat: String, Sendable, Hashable {
        case spnego
        case kerberos
    }

    /// When the token is sent.
    public enum SendAuthorization: String, Sendable, Hashable {
        case always
        /// First without a token; a `401 WWW-Authenticate: Negotiate` is answered with one.
        case on401
    }

    /// Whether the backend must prove itself with a Kerberos reply.
    public enum MutualAuthentication: String, Sendable, Hashable {
        /// A reply the backend sends is verified; none (lighttpd, Go's gokrb5) is accepted.
        case ifOffered
        /// A success without a verified reply is refused (502): for backends that always send one.
        case required
    }

    public var spn: String
    public var loginIdentity: LoginIdentity
    public var tokenFormat: TokenFormat
    public var sendAuthorization: SendAuthorization
    public var mutualAuthentication: MutualAuthentication

    static let keys = ["spn", "delegatedLoginIdentity", "tokenFormat", "sendAuthorization", "mutualAuthentication"]
    /// Claims that carry the on-premises account name, in the order they are looked for.
    public static let samAccountNameClaims = ["samAccountName", "sAMAccountName", "onprem_sam_account_name"]

    /// Reads and checks the settings.
    public init(settings: SettingsMap) throws {
        for key in settings.keys.sorted() where !Self.keys.contains(key) {
            throw SettingsError(key: key, message: "unknown setting for the kcd handler; allowed: \(Self.keys.joined(separator: ", "))")
        }
        guard let spn = settings["spn"]?.string else {
            throw SettingsError(key: "spn", message: "is required: the app's service principal name, e.g. HTTP/payroll.corp.example.com")
        }
        guard Self.isServicePrincipal(spn) else {
            throw SettingsError(
                key: "spn", message: "must be a service principal name such as HTTP/payroll.corp.example.com (optionally @REALM), without spaces (got \"\(spn)\")"
            )
        }
        self.spn = spn
        switch settings["delegatedLoginIdentity"] {
        case nil, .string("upn")?: self.loginIdentity = .upn
        case .string("upnUsername")?: self.loginIdentity = .upnUsername
        case .string("samAccountName")?: self.loginIdentity = .samAccountName
        case .string(let text)? where text.hasPrefix("claim:") && text.count > 6 && !text.dropFirst(6).contains(where: \.isWhitespace):
            self.loginIdentity = .claim(String(text.dropFirst(6)))
        default:
            throw SettingsError(key: "delegatedLoginIdentity", message: "must be upn, upnUsername, samAccountName or claim:NAME")
        }
        switch settings["tokenFormat"] {
        case nil, .string("spnego")?: self.tokenFormat = .spnego
        case .string("kerberos")?: self.tokenFormat = .kerberos
        default: throw SettingsError(key: "tokenFormat", message: "must be spnego (what browsers send) or kerberos (a raw Kerberos AP-REQ)")
        }
        switch settings["sendAuthorization"] {
        case nil: self.sendAuthorization = .always
        case .string(let text)?:
            guard let mode = SendAuthorization(rawValue: text) else { fallthrough }
            self.sendAuthorization = mode
        default: throw SettingsError(key: "sendAuthorization", message: "must be always or on401")
        }
        switch settings["mutualAuthentication"] {
        case nil: self.mutualAuthentication = .ifOffered
        case .string(let text)?:
            guard let mode = MutualAuthentication(rawValue: text) else { fallthrough }
            self.mutualAuthentication = mode
        default:
            throw SettingsError(
                key: "mutualAuthentication",
                message: "must be ifOffered (verify a Kerberos reply when the backend sends one) or required (refuse answers without one)"
            )
        }
    }

    /// `service/host` with an optional `@REALM`: no spaces, control characters or further `/`.
    static func isServicePrincipal(_ text: String) -> Bool {
        let name = text.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false)
        guard name.count <= 2, let first = name.first, name.count == 1 || !name[1].isEmpty, !name[1...].contains(where: { $0.contains("@") }) else { return false }
        let parts = first.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { return false }
        return !text.unicodeScalars.contains { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F || $0 == "\\" }
    }
}

extension KCDSettings {
    /// Whether `spn` (its realm ignored) matches an allowlist entry: exactly (host part case-insensitively), or
    /// `service/*.domain` for any host below `domain`.
    public static func matches(_ spn: String, pattern: String) -> Bool {
        let (service, host) = Self.split(spn)
        let (patternService, patternHost) = Self.split(pattern)
        guard service == patternService else { return false }
        if patternHost.hasPrefix("*.") { return host.hasSuffix(patternHost.dropFirst(1)) && host.count > patternHost.count - 1 }
        return host == patternHost
    }

    private static func split(_ spn: String) -> (String, String) {
        let withoutRealm = spn.split(separator: "@", maxSplits: 1).first.map(String.init) ?? spn
        let parts = withoutRealm.split(separator: "/", maxSplits: 1)
        return (String(parts.first ?? ""), parts.count > 1 ? parts[1].lowercased() : "")
    }
}

/// The `kcd` handler where no Kerberos credentials are (the relay, `config validate`): it checks the settings,
/// and the SPN against `allowedSPNs` when given; a connector puts `KCDHandlerFactory` with its delegator in
/// its place.
public struct KCDSettingsFactory: SSOHandlerFactory {
    public let name = "kcd"
    public let requiresIdentity = true
    /// `on401` sends a request twice: without a token, then answering the challenge.
    public let maximumAttempts = 2
    /// SPNs (without realm) this connector may delegate to; `HTTP/*.corp.example.com` matches any host below. Empty: any.
    let allowedSPNs: [String]

    public init(allowedSPNs: [String] = []) {
        self.allowedSPNs = allowedSPNs
    }

    public func makeHandler(context: HandlerContext) throws -> any SSOHandler {
        _ = try KCDSettings(settings: context.settings, allowedSPNs: self.allowedSPNs)
        return UnavailableHandler()
    }

    /// Refuses every request: this process cannot obtain tickets.
    struct UnavailableHandler: SSOHandler {
        func prepare(_ request: inout BackendRequest, identity: Identity?, attempt: Int) async -> RequestDecision {
            .refuse(Refusal(status: 502, message: "Single sign-on to this application is not working right now. Contact your administrator.", reason: "the kcd handler has no Kerberos credentials on this process"))
        }
    }
}

extension KCDSettings {
    /// Reads the settings and checks the SPN against a connector's `allowedSPNs` (empty: any).
    public init(settings: SettingsMap, allowedSPNs: [String]) throws {
        try self.init(settings: settings)
        if !allowedSPNs.isEmpty, !allowedSPNs.contains(where: { Self.matches(self.spn, pattern: $0) }) {
            throw SettingsError(
                key: "spn",
                message: "\(self.spn) is not in this connector's kerberos.allowedSPNs (\(allowedSPNs.joined(separator: ", "))); add it there if this connector should delegate to it"
            )
        }
    }
}
