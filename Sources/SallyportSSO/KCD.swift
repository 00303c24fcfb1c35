import Foundation
import SallyportKerberos
import SallyportPluginAPI
import Synchronization

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
/// ```
public struct KCDSettings: Sendable, Hashable {
    /// How the user's principal is formed from the identity.
    public enum LoginIdentity: Sendable, Hashable {
        case upn
        case upnUsername
        case samAccountName
        case claim(String)
    }

    /// When the token is sent.
    public enum SendAuthorization: String, Sendable, Hashable {
        case always
        /// First without a token; a `401 WWW-Authenticate: Negotiate` is answered with one.
        case on401
    }

    public var spn: String
    public var loginIdentity: LoginIdentity
    public var mechanism: GSSMechanism
    public var sendAuthorization: SendAuthorization

    static let keys = ["spn", "delegatedLoginIdentity", "tokenFormat", "sendAuthorization"]
    /// Claims that carry the on-premises account name, in the order they are looked for.
    public static let samAccountNameClaims = ["samAccountName", "sAMAccountName", "onprem_sam_account_name"]

    /// Reads and checks the settings.
    public init(settings: [String: SettingValue]) throws {
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
        case nil, .string("spnego")?: self.mechanism = .spnego
        case .string("kerberos")?: self.mechanism = .kerberos
        default: throw SettingsError(key: "tokenFormat", message: "must be spnego (what browsers send) or kerberos (a raw Kerberos AP-REQ)")
        }
        switch settings["sendAuthorization"] {
        case nil: self.sendAuthorization = .always
        case .string(let text)?:
            guard let mode = SendAuthorization(rawValue: text) else { fallthrough }
            self.sendAuthorization = mode
        default: throw SettingsError(key: "sendAuthorization", message: "must be always or on401")
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

    /// The user to delegate for `identity`, or why there is none.
    public func user(for identity: Identity) -> Result<DelegatedUser, KCDRefusalReason> {
        let upn = identity.userPrincipalName
        switch loginIdentity {
        case .upn:
            guard DelegatedUser.isAcceptable(upn, allowsAt: true), upn.contains("@") else { return .failure(.unusableName("upn", upn)) }
            return .success(.upn(upn))
        case .upnUsername:
            let name = String(upn.prefix { $0 != "@" })
            guard DelegatedUser.isAcceptable(name, allowsAt: false) else { return .failure(.unusableName("upn", upn)) }
            return .success(.account(name))
        case .samAccountName:
            guard let value = Self.samAccountNameClaims.lazy.compactMap({ identity.claims[$0]?.first }).first else {
                return .failure(.missingClaim(Self.samAccountNameClaims.joined(separator: ", ")))
            }
            guard DelegatedUser.isAcceptable(value, allowsAt: false) else { return .failure(.unusableName("samAccountName", value)) }
            return .success(.account(value))
        case .claim(let name):
            guard let value = identity.values(of: name)?.first else { return .failure(.missingClaim(name)) }
            guard DelegatedUser.isAcceptable(value, allowsAt: true) else { return .failure(.unusableName(name, value)) }
            return .success(value.contains("@") ? .upn(value) : .account(value))
        }
    }
}

/// Why the identity gives no user to delegate for.
public enum KCDRefusalReason: Error, Sendable, Hashable, CustomStringConvertible {
    case missingClaim(String)
    case unusableName(String, String)

    public var description: String {
        switch self {
        case .missingClaim(let claim):
            "the identity has no \(claim) claim (keep it with claims.keep on the relay's identity provider, or change delegatedLoginIdentity)"
        case .unusableName(let attribute, let value):
            "the identity's \(attribute) \"\(value)\" cannot name a Kerberos user (empty, or it has /, \\, spaces or more than one @)"
        }
    }
}

/// Makes `kcd` handlers. Without a delegator (on the relay, or for `config validate`) it only checks settings.
public struct KCDHandlerFactory: SSOHandlerFactory {
    public let name = "kcd"
    public let requiresIdentity = true
    /// `on401` sends a request twice: without a token, then answering the challenge.
    public let maximumAttempts = 2

    let delegator: KerberosDelegator?
    /// SPNs (without realm) this connector may delegate to; `HTTP/*.corp.example.com` matches any host below. Empty: any.
    let allowedSPNs: [String]

    public init(delegator: KerberosDelegator? = nil, allowedSPNs: [String] = []) {
        self.delegator = delegator
        self.allowedSPNs = allowedSPNs
    }

    public func makeHandler(context: HandlerContext) throws -> any SSOHandler {
        let settings = try KCDSettings(settings: context.settings)
        if !allowedSPNs.isEmpty, !allowedSPNs.contains(where: { Self.matches(settings.spn, pattern: $0) }) {
            throw SettingsError(
                key: "spn",
                message: "\(settings.spn) is not in this connector's kerberos.allowedSPNs (\(allowedSPNs.joined(separator: ", "))); add it there if this connector should delegate to it"
            )
        }
        return KCDHandler(settings: settings, delegator: delegator, context: context)
    }

    /// Whether `spn` (its realm ignored) matches an allowlist entry: exactly (host part case-insensitively), or
    /// `service/*.domain` for any host below `domain`.
    static func matches(_ spn: String, pattern: String) -> Bool {
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

/// Signs users in to a Negotiate backend with delegated Kerberos tickets.
public final class KCDHandler: SSOHandler {
    public let settings: KCDSettings
    let delegator: KerberosDelegator?
    let target: GSSName?
    let logger: PluginLogger
    let metrics: PluginMetrics
    /// The host's thread pool: GSS calls block, and never run on the concurrency pool.
    let host: HandlerContext
    /// Contexts waiting for the backend's mutual-authentication reply, by the `Authorization` value sent.
    private let pending = Mutex(PendingContexts())
    /// SPNs some user got a ticket for here: a later refusal for another user points at that user's account.
    private let workingSPN = Atomic<Bool>(false)

    init(settings: KCDSettings, delegator: KerberosDelegator?, context: HandlerContext) {
        self.settings = settings
        self.delegator = delegator
        self.target = try? GSSName(principal: settings.spn)
        self.logger = context.logger
        self.metrics = context.metrics
        self.host = context
    }

    public func prepare(_ request: inout BackendRequest, identity: Identity?, attempt: Int) async -> RequestDecision {
        // Whatever the user sent as Authorization (a bearer token for the relay, say) is not for the backend.
        request.headers.remove("Authorization")
        guard let delegator, let target else {
            return .refuse(Refusal(status: 502, message: Self.unavailableMessage, reason: "the kcd handler has no Kerberos credentials on this process"))
        }
        guard let identity else {
            return .refuse(Refusal(status: 403, message: Self.refusedMessage, reason: "no identity reached the kcd handler (is the app passthrough?)"))
        }
        let user: DelegatedUser
        switch settings.user(for: identity) {
        case .success(let found): user = found
        case .failure(let reason):
            metrics.increment("refusals", dimensions: ["reason": "identity"])
            return .refuse(Refusal(status: 403, message: Self.refusedMessage, reason: "user \(identity.userPrincipalName): \(reason)"))
        }
        // Connections that carried this user's ticket serve only this user.
        request.connectionAffinity = "kcd \(settings.spn) \(user)"
        if settings.sendAuthorization == .on401, attempt == 1, !Self.hasBody(request) { return .proceed }

        let credential: GSSCredential
        do {
            credential = try await delegator.credential(for: user, spn: settings.spn, mechanism: settings.mechanism)
        } catch {
            return .refuse(self.refusal(for: error, user: user))
        }
        self.workingSPN.store(true, ordering: .relaxed)
        // The ticket is in the credential's memory cache and valid for at least renewBefore: no KDC traffic.
        let initiator = GSSInitiator()
        do {
            let token = try await self.host.runBlocking { try initiator.firstToken(credential: credential, target: target) }
            let value = "Negotiate " + Data(token).base64EncodedString()
            request.headers.set("Authorization", value)
            self.pending.withLock { $0.insert(value, PendingContexts.Context(initiator: initiator, credential: credential)) }
            return .proceed
        } catch {
            return .refuse(self.refusal(for: DelegationError(step: .token, failure: .other, detail: "\(error)"), user: user))
        }
    }

    public func inspect(_ response: BackendResponse, request: BackendRequest, identity: Identity?, attempt: Int) async -> ResponseDecision {
        let sent = request.headers["Authorization"]
        let context = sent.flatMap { value in self.pending.withLock { $0.remove(value) } }
        let negotiate = response.headers.values(named: "WWW-Authenticate").compactMap(Self.negotiateToken).first
        if response.status == 401, negotiate != nil {
            if sent == nil, attempt == 1 { return .retry }
            metrics.increment("refusals", dimensions: ["reason": "backend-refused-ticket"])
            return .refuse(
                Refusal(
                    status: 502, message: Self.unavailableMessage,
                    reason: "backend-refused-ticket: the backend answered 401 Negotiate to a ticket for \(settings.spn); check the backend's keytab (key version, encryption types), that it expects this SPN, and its clock"
                )
            )
        }
        if let context, let reply = negotiate, let bytes = reply.flatMap({ Data(base64Encoded: $0) }), !bytes.isEmpty, let target {
            do {
                _ = try await self.host.runBlocking { try context.initiator.verifyReply(Array(bytes), credential: context.credential, target: target) }
            } catch {
                metrics.increment("refusals", dimensions: ["reason": "mutual-authentication-failed"])
                return .refuse(
                    Refusal(
                        status: 502, message: Self.unavailableMessage,
                        reason: "mutual-authentication-failed: the backend's Negotiate reply for \(settings.spn) does not verify (\(error)); is something else answering for the app?"
                    )
                )
            }
        }
        return .deliver
    }

    /// A refusal for a failed delegation step: its category decides the status; the log gets the KDC's words.
    func refusal(for error: DelegationError, user: DelegatedUser) -> Refusal {
        let failure = error.failure
        var hint = failure.likelyFix(step: error.step)
        if failure == .delegationRefused, self.workingSPN.load(ordering: .relaxed) {
            // Other users got tickets for this SPN here, so the delegation list is fine: this user's account is not delegable.
            hint = "other users get tickets for this SPN, so this user's account is likely marked sensitive or in Protected Users"
        }
        metrics.increment("refusals", dimensions: ["reason": failure.rawValue])
        let message: String
        switch failure.status {
        case 503: message = "Signing you in to this application is temporarily unavailable. Try again in a few minutes."
        case 403: message = Self.refusedMessage
        default: message = Self.unavailableMessage
        }
        return Refusal(status: failure.status, message: message, reason: "\(failure.rawValue) for \(user) to \(settings.spn) at \(error.step.rawValue): \(error.detail); \(hint)")
    }

    static let refusedMessage = "Your account cannot be signed in to this application. Contact your administrator."
    static let unavailableMessage = "Single sign-on to this application is not working right now. Contact your administrator."

    /// Whether the request has a body (it cannot be sent twice, so `on401` sends a token at once).
    static func hasBody(_ request: BackendRequest) -> Bool {
        if request.headers["Transfer-Encoding"] != nil { return true }
        if let length = request.headers["Content-Length"], length != "0" { return true }
        return false
    }

    /// For a `Negotiate` challenge: its token (nil when bare). Nil for other schemes.
    static func negotiateToken(_ value: String) -> String?? {
        let trimmed = value.drop { $0 == " " }
        guard trimmed.lowercased().hasPrefix("negotiate") else { return nil }
        let rest = trimmed.dropFirst("negotiate".count)
        guard rest.isEmpty || rest.first == " " else { return nil }
        let token = rest.trimmingSpaces()
        return .some(token.isEmpty ? nil : token)
    }
}

/// Initiators whose reply token has not come back yet; bounded, oldest dropped (a request that never got
/// a response leaves its entry behind).
struct PendingContexts {
    struct Context {
        var initiator: GSSInitiator
        var credential: GSSCredential
    }

    private var byValue: [String: Context] = [:]
    /// Insertion order; may name entries already removed until the next compaction.
    private var order: [String] = []
    static let limit = 4096

    mutating func insert(_ value: String, _ context: Context) {
        byValue[value] = context
        order.append(value)
        if order.count > 2 * Self.limit { order.removeAll { byValue[$0] == nil } }
        while byValue.count > Self.limit, !order.isEmpty { byValue[order.removeFirst()] = nil }
    }

    mutating func remove(_ value: String) -> Context? { byValue.removeValue(forKey: value) }
}

extension Substring {
    fileprivate func trimmingSpaces() -> String {
        String(self.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
