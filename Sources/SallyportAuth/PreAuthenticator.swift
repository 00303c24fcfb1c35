import AsyncHTTPClient
import Crypto
public import Foundation
public import HTTPTypes
public import Logging
import NIOCore
import NIOSSL
public import SallyportConfig
public import SallyportHTTP
public import SallyportPluginAPI
import Synchronization

/// Where sign-in states are marked used, so that a sign-in response is accepted once whichever relay it reaches.
public protocol SignInLedger: Sendable {
    /// Marks `key` used until `expiresAt`; false if it already was. Throws when the ledger cannot be reached.
    func use(_ key: String, until expiresAt: Date) async throws -> Bool
}

/// What the relay does with a request after pre-authentication.
public enum AuthDecision: Sendable {
    /// Send it on, with the user's identity (nil for passthrough apps); add these `Set-Cookie` values to the
    /// response.
    case forward(identity: Identity?, setCookies: [String])
    /// Answer from the relay: a sign-in redirect, 401, 403, 400 or 503. Nothing reaches a connector.
    case answer(ErrorPage)
}

/// Pre-authentication at the relay: for each app, a chain of ``Authenticator``s finds who the user is (a
/// trusted JWT; a session cookie, else a sign-in at the OIDC provider), then the app's access rules decide.
/// Provider set-up is in `Providers.swift`, sessions in `Sessions.swift`, the sign-in flow in `SignIn.swift`,
/// and the relay's own paths in `RelayRoutes.swift`.
public final class PreAuthenticator: Sendable {
    /// Where the provider sends the browser back; register `https://APP-HOST/.sallyport/auth/callback`.
    public static let callbackPath = "/.sallyport/auth/callback"
    /// Ends the sessions on this host.
    public static let signOutPath = "/.sallyport/auth/sign-out"

    /// A sign-in must come back within this time.
    static let signInLifetime: TimeInterval = 600

    let providers: Providers
    let sealer: CookieSealer
    let sessions: SessionConfig
    /// The authenticators of each provider's apps, in order.
    let chains: [String: [any Authenticator]]
    let usedStates = Mutex(ReplayCache(lifetime: PreAuthenticator.signInLifetime))
    /// Where sign-in states are marked used across relays; nil: this relay's memory only.
    let ledger: (any SignInLedger)?
    let logger: Logger

    /// Reads client secrets and the session key. A provider whose secret (or, for OIDC, the session key) cannot
    /// be read is logged and left out: its apps answer 503, every other app keeps working.
    ///
    /// `sharedKey` is the session key relays sharing a store keep there, used when `sessions.keyFile` is not set;
    /// `ledger` makes every sign-in response single-use across them.
    public init(config: RelayConfig, logger: Logger, sharedKey: [UInt8]? = nil, ledger: (any SignInLedger)? = nil) {
        self.logger = logger
        self.sessions = config.sessions
        self.ledger = ledger
        var sealer: CookieSealer?
        do {
            if config.sessions.keyFile == nil, let sharedKey {
                sealer = CookieSealer(key: SymmetricKey(data: sharedKey))
            } else {
                sealer = CookieSealer(key: try CookieSealer.key(fromFile: config.sessions.keyFile))
            }
        } catch {
            logger.error("sign-in sessions are unavailable; apps using OIDC answer 503 until this is fixed and the relay restarts", metadata: ["error": "\(error)"])
        }
        let sealing = sealer ?? CookieSealer(key: SymmetricKey(size: .bits256))
        self.sealer = sealing
        let providers = Providers(config: config, sessionsAvailable: sealer != nil, logger: logger)
        self.providers = providers
        var chains: [String: [any Authenticator]] = [:]
        for (name, provider) in providers.jwt { chains[name] = [JWTAuthenticator(provider: provider)] }
        for (name, provider) in providers.oidc {
            chains[name] = [
                SessionAuthenticator(provider: provider.name, sealer: sealing, sessions: config.sessions),
                SignInAuthenticator(provider: provider, sealer: sealing),
            ]
        }
        self.chains = chains
        if config.sessions.keyFile == nil, sharedKey == nil, !providers.oidc.isEmpty {
            logger.notice("sessions.keyFile is not set: sign-in sessions use a random key and end when the relay restarts")
        }
    }

    /// Closes the HTTP clients.
    public func shutdown() async {
        await self.providers.shutdown()
    }

    /// Decides whether a request for `app` goes on, and with which identity: the first authenticator of the
    /// app's provider that knows the user wins, one that answers ends the request, and when none knows the user
    /// the answer is 401.
    public func authenticate(_ request: HTTPRequest, app: AppConfig, authority: String, logger: Logger) async -> AuthDecision {
        guard let policy = app.preAuthentication.policy else { return .forward(identity: nil, setCookies: []) }
        let providerName = policy.provider ?? ""
        guard let chain = self.chains[providerName] else {
            // The catalog only admits apps whose provider exists: this one could not be set up (logged at start).
            logger.error("the app's identity provider is unavailable; see the error logged at start", metadata: ["app": "\(app.name)", "provider": "\(providerName)"])
            return .answer(Pages.signInUnavailable)
        }
        let attempt = AuthenticationRequest(head: request, authority: authority, logger: logger)
        for authenticator in chain {
            do {
                if let found = try await authenticator.authenticate(attempt) { return Self.admit(found, policy: policy, logger: logger) }
            } catch {
                return .answer(error.page)
            }
        }
        return .answer(Pages.unauthorized(realm: authority, error: nil))
    }

    /// ``authenticate(_:app:authority:logger:)`` when every authenticator it asks decides without I/O (a
    /// passthrough app, a token verified before, a session cookie); nil when it must wait.
    public func authenticateImmediately(_ request: HTTPRequest, app: AppConfig, authority: String, logger: Logger) -> AuthDecision? {
        guard let policy = app.preAuthentication.policy else { return .forward(identity: nil, setCookies: []) }
        guard let chain = self.chains[policy.provider ?? ""] else { return nil }
        let attempt = AuthenticationRequest(head: request, authority: authority, logger: logger)
        for authenticator in chain {
            switch authenticator.authenticateImmediately(attempt) {
            case nil: return nil
            case .success(let found?)?: return Self.admit(found, policy: policy, logger: logger)
            case .success(nil)?: continue
            case .failure(let answer)?: return .answer(answer.page)
            }
        }
        return .answer(Pages.unauthorized(realm: authority, error: nil))
    }

    /// The app's access rules.
    static func admit(_ found: Authenticated, policy: AccessPolicy, logger: Logger) -> AuthDecision {
        let identity = found.identity
        guard policy.allows(userPrincipalName: identity.userPrincipalName, groups: identity.groups) else {
            logger.info("access denied by the app's rules", metadata: ["user": "\(identity.userPrincipalName)"])
            var page = Pages.forbidden(user: identity.userPrincipalName)
            for cookie in found.setCookies { page.headerFields.append(HTTPField(name: .setCookie, value: cookie)) }
            return .answer(page)
        }
        return .forward(identity: identity, setCookies: found.setCookies)
    }
}
