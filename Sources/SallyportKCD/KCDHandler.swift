import Foundation
public import SallyportKerberos
public import SallyportPluginAPI
public import SallyportSSO
import Synchronization

extension KCDSettings {
    /// The GSS mechanism of ``tokenFormat``.
    public var mechanism: GSSMechanism {
        switch self.tokenFormat {
        case .spnego: .spnego
        case .kerberos: .kerberos
        }
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

/// Makes `kcd` handlers with the connector's delegator (without one, its handlers refuse every request).
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
        let settings = try KCDSettings(settings: context.settings, allowedSPNs: self.allowedSPNs)
        return KCDHandler(settings: settings, delegator: delegator, context: context)
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

    public func inspect(_ response: inout BackendResponse, request: BackendRequest, identity: Identity?, attempt: Int) async -> ResponseDecision {
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
        let replyBytes = negotiate.flatMap { $0 }.flatMap { Data(base64Encoded: $0) }.map { Array($0) } ?? []
        let reply = replyBytes.isEmpty ? nil : NegotiateReply.classify(replyBytes)
        if context != nil, reply != .token, settings.mutualAuthentication == .required, response.status < 400 {
            metrics.increment("refusals", dimensions: ["reason": "mutual-authentication-missing"])
            return .refuse(
                Refusal(
                    status: 502, message: Self.unavailableMessage,
                    reason: "mutual-authentication-missing: the backend for \(settings.spn) answered without a Kerberos reply, and the app sets mutualAuthentication: required; use ifOffered for backends that never send one (lighttpd, Go's gokrb5)"
                )
            )
        }
        if let context, reply == .token, let target {
            let bytes = replyBytes
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
        var hint = error.likelyFix
        if failure == .delegationRefused, error.evidenceForwardable != true, self.workingSPN.load(ordering: .relaxed) {
            // Other users got tickets for this SPN here, so the delegation list is fine: this user's account is not delegable.
            hint = "other users get tickets for this SPN, so this user's account is likely marked sensitive (AD: \"Account is sensitive and cannot be delegated\" or Protected Users; MIT: -allow_forwardable)"
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
