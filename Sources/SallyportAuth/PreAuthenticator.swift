import AsyncHTTPClient
import Crypto
import Foundation
import HTTPTypes
import Logging
import NIOCore
import NIOSSL
import SallyportConfig
import SallyportHTTP
import SallyportPluginAPI
import Synchronization

/// What the relay does with a request after pre-authentication.
public enum AuthDecision: Sendable {
    /// Send it on, with the user's identity (nil for passthrough apps); add these `Set-Cookie` values to the
    /// response.
    case forward(identity: Identity?, setCookies: [String])
    /// Answer from the relay: a sign-in redirect, 401, 403, 400 or 503. Nothing reaches a connector.
    case answer(ErrorPage)
}

/// Pre-authentication at the relay: OIDC sign-in with sessions in sealed cookies, trusted JWTs, and the
/// apps' access rules. Handles the relay's own paths under `/.sallyport/auth/` on every app host.
public final class PreAuthenticator: Sendable {
    /// Paths under this prefix belong to the relay on every published host; they never reach an app.
    public static let reservedPathPrefix = "/.sallyport/"
    /// Where the provider sends the browser back; register `https://APP-HOST/.sallyport/auth/callback`.
    public static let callbackPath = "/.sallyport/auth/callback"
    /// Ends the sessions on this host.
    public static let signOutPath = "/.sallyport/auth/sign-out"

    /// A sign-in must come back within this time.
    static let signInLifetime: TimeInterval = 600

    private let oidc: [String: OIDCClient]
    private let jwt: [String: JWTProvider]
    private let clients: [HTTPClient]
    private let sealer: CookieSealer
    private let sessions: SessionConfig
    private let usedStates = Mutex<[String: Date]>([:])
    private let logger: Logger

    /// Reads client secrets and the session key. A provider whose secret (or, for OIDC, the session key) cannot
    /// be read is logged and left out: its apps answer 503, every other app keeps working.
    public init(config: RelayConfig, logger: Logger) {
        self.logger = logger
        self.sessions = config.sessions
        var sealer: CookieSealer?
        do {
            sealer = CookieSealer(key: try CookieSealer.key(fromFile: config.sessions.keyFile))
        } catch {
            logger.error("sign-in sessions are unavailable; apps using OIDC answer 503 until this is fixed and the relay restarts", metadata: ["error": "\(error)"])
        }
        self.sealer = sealer ?? CookieSealer(key: SymmetricKey(size: .bits256))
        var oidc: [String: OIDCClient] = [:]
        var jwt: [String: JWTProvider] = [:]
        var clients: [HTTPClient] = []
        for provider in config.identityProviders {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.minimumTLSVersion = .tlsv12
            if let caFile = provider.caFile { tls.trustRoots = .file(caFile) }
            var configuration = HTTPClient.Configuration(tlsConfiguration: tls, redirectConfiguration: .disallow)
            configuration.timeout = .init(connect: .seconds(5), read: .seconds(10))
            var providerLogger = logger
            providerLogger[metadataKey: "provider"] = "\(provider.name)"
            switch provider.kind {
            case .oidc(let settings):
                guard sealer != nil else { continue }
                let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
                do {
                    oidc[provider.name] = try OIDCClient(
                        name: provider.name, settings: settings, claims: provider.claims, clockSkew: provider.clockSkew, client: client, logger: providerLogger
                    )
                    clients.append(client)
                } catch {
                    try? client.syncShutdown()
                    logger.error("identity provider unavailable; its apps answer 503 until this is fixed and the relay restarts", metadata: ["error": "\(error)"])
                }
            case .jwt(let settings):
                let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
                clients.append(client)
                jwt[provider.name] = JWTProvider(
                    name: provider.name, settings: settings, claims: provider.claims, clockSkew: provider.clockSkew, client: client, logger: providerLogger
                )
            }
        }
        self.oidc = oidc
        self.jwt = jwt
        self.clients = clients
        if config.sessions.keyFile == nil, !oidc.isEmpty {
            logger.notice("sessions.keyFile is not set: sign-in sessions use a random key and end when the relay restarts")
        }
    }

    /// Closes the HTTP clients.
    public func shutdown() async {
        for client in clients { try? await client.shutdown() }
    }

    // MARK: - Requests for apps

    /// Decides whether a request for `app` goes on, and with which identity.
    public func authenticate(_ request: HTTPRequest, app: AppConfig, authority: String, logger: Logger) async -> AuthDecision {
        guard let policy = app.preAuthentication.policy else { return .forward(identity: nil, setCookies: []) }
        let providerName = policy.provider ?? ""
        if let provider = jwt[providerName] {
            return await self.authenticateJWT(request, provider: provider, policy: policy, authority: authority, logger: logger)
        }
        if let provider = oidc[providerName] {
            return await self.authenticateSession(request, provider: provider, policy: policy, app: app, authority: authority, logger: logger)
        }
        // The catalog only admits apps whose provider exists: this one could not be set up (logged at start).
        logger.error("the app's identity provider is unavailable; see the error logged at start", metadata: ["app": "\(app.name)", "provider": "\(providerName)"])
        return .answer(Pages.signInUnavailable)
    }

    private func authenticateJWT(_ request: HTTPRequest, provider: JWTProvider, policy: AccessPolicy, authority: String, logger: Logger) async -> AuthDecision {
        guard let token = provider.token(in: request.headerFields) else {
            return .answer(Pages.unauthorized(realm: authority, error: nil))
        }
        do {
            let identity = try await provider.authenticate(token: token)
            return self.admit(identity, policy: policy, setCookies: [], logger: logger)
        } catch {
            if case .providerUnavailable = error {
                logger.error("cannot check a token: the issuer's keys are unavailable", metadata: ["provider": "\(provider.name)", "error": "\(error)"])
                return .answer(Pages.signInUnavailable)
            }
            logger.info("token refused", metadata: ["provider": "\(provider.name)", "reason": "\(error)"])
            return .answer(Pages.unauthorized(realm: authority, error: error.description))
        }
    }

    struct Session: Codable {
        var identity: Identity
        var issued: Double
        var seen: Double
    }

    /// What a sealed cookie is bound to: its purpose, its name and the host it was set for.
    static func sealingContext(_ purpose: String, cookie: String, authority: String) -> String {
        "\(purpose)|\(cookie)|\(authority.lowercased())"
    }

    static func sessionCookie(_ provider: String) -> String { "\(cookiePrefix)\(provider)" }

    /// Every cookie the relay sets starts with this.
    static let cookiePrefix = "__Host-sallyport-"

    /// Removes the relay's cookies (sessions, sign-in state) from the `Cookie` fields of a request that
    /// goes on to a backend; other cookies stay as they were.
    public static func removeRelayCookies(from fields: inout HTTPFields) {
        let values = fields[values: .cookie]
        guard values.contains(where: { $0.contains(cookiePrefix) }) else { return }
        let kept = values.compactMap { value -> String? in
            let pairs = value.split(separator: ";").map { $0.drop { $0 == " " } }.filter { !$0.hasPrefix(cookiePrefix) }
            return pairs.isEmpty ? nil : pairs.joined(separator: "; ")
        }
        fields[values: .cookie] = kept
    }

    private func authenticateSession(
        _ request: HTTPRequest, provider: OIDCClient, policy: AccessPolicy, app: AppConfig, authority: String, logger: Logger
    ) async -> AuthDecision {
        let name = Self.sessionCookie(provider.name)
        let context = Self.sealingContext("session", cookie: name, authority: authority)
        let now = Date().timeIntervalSince1970
        if let sealed = Cookies.chunkedValue(name, in: request.headerFields) {
            if var session = sealer.open(sealed, as: Session.self, context: context),
                now - session.issued < Double(sessions.lifetime.components.seconds),
                now - session.seen < Double(sessions.idleTimeout.components.seconds)
            {
                var setCookies: [String] = []
                // Keep the idle clock going without rewriting the cookie on every request.
                if now - session.seen > min(60, Double(sessions.idleTimeout.components.seconds) / 4) {
                    session.seen = now
                    if let value = sealer.seal(session, context: context),
                        let cookies = Cookies.setChunked(
                            name, value: value, maxAge: Int(session.issued + Double(sessions.lifetime.components.seconds) - now), replacing: request.headerFields
                        )
                    {
                        setCookies += cookies
                    }
                }
                return self.admit(session.identity, policy: policy, setCookies: setCookies, logger: logger)
            }
            logger.debug("session cookie expired, tampered with or from another key; signing in again")
        }
        guard Self.isBrowserNavigation(request) else {
            return .answer(Pages.unauthorized(realm: authority, error: nil))
        }
        return await self.startSignIn(request, provider: provider, app: app, authority: authority, logger: logger)
    }

    private func admit(_ identity: Identity, policy: AccessPolicy, setCookies: [String], logger: Logger) -> AuthDecision {
        guard policy.allows(userPrincipalName: identity.userPrincipalName, groups: identity.groups) else {
            logger.info("access denied by the app's rules", metadata: ["user": "\(identity.userPrincipalName)"])
            var page = Pages.forbidden(user: identity.userPrincipalName)
            for cookie in setCookies { page.headerFields.append(HTTPField(name: .setCookie, value: cookie)) }
            return .answer(page)
        }
        return .forward(identity: identity, setCookies: setCookies)
    }

    /// A top-level browser visit that can be redirected to sign in, rather than an API or script call.
    static func isBrowserNavigation(_ request: HTTPRequest) -> Bool {
        guard request.method == .get || request.method == .head else { return false }
        let fields = request.headerFields
        if fields[.authorization] != nil || fields[HTTPField.Name("X-Requested-With")!] != nil { return false }
        let accept = (fields[.accept] ?? "").lowercased()
        if accept.contains("text/html") { return true }
        return !accept.contains("json")
    }

    struct PendingSignIn: Codable {
        var state: String
        var nonce: String
        var verifier: String
        var returnTo: String
        var provider: String
        var issued: Double
    }

    static func loginCookie(state: String) -> String { "__Host-sallyport-login-\(state.prefix(16))" }

    private func startSignIn(_ request: HTTPRequest, provider: OIDCClient, app: AppConfig, authority: String, logger: Logger) async -> AuthDecision {
        let state = Base64URL.random()
        let nonce = Base64URL.random()
        let pkce = OIDCClient.pkce()
        let returnTo = Self.safeReturnPath(request.path ?? "/")
        let url: String
        do {
            url = try await provider.authorizationURL(redirectURI: Self.redirectURI(authority), state: state, nonce: nonce, challenge: pkce.challenge)
        } catch {
            logger.error("cannot start sign-in: the identity provider is unavailable", metadata: ["provider": "\(provider.name)", "error": "\(error)"])
            return .answer(Pages.signInUnavailable)
        }
        let pending = PendingSignIn(
            state: state, nonce: nonce, verifier: pkce.verifier, returnTo: returnTo, provider: provider.name, issued: Date().timeIntervalSince1970
        )
        let cookie = Self.loginCookie(state: state)
        guard let sealed = sealer.seal(pending, context: Self.sealingContext("login", cookie: cookie, authority: authority)) else {
            return .answer(Pages.signInUnavailable)
        }
        var fields = HTTPFields()
        fields[.location] = url
        fields.append(HTTPField(name: .setCookie, value: Cookies.set(cookie, value: sealed, maxAge: Int(Self.signInLifetime))))
        return .answer(ErrorPage(status: .found, title: "Signing in", detail: "Continue to your organisation's sign-in page.", headerFields: fields))
    }

    static func redirectURI(_ authority: String) -> String { "https://\(authority.lowercased())\(callbackPath)" }

    /// A path on this host to come back to: never another host (`//evil`, `/\evil`), never the relay's own paths.
    static func safeReturnPath(_ path: String) -> String {
        guard path.hasPrefix("/"), !path.hasPrefix("//"), !path.hasPrefix("/\\"), !path.hasPrefix(reservedPathPrefix) else { return "/" }
        return path
    }

    // MARK: - The relay's own paths

    /// Where load balancers check that the relay is up; answered on every host without authentication.
    public static let healthPath = "/.sallyport/health"

    /// Answers a request under ``reservedPathPrefix``. `providers` are those of the apps on this host.
    public func handleReserved(_ request: HTTPRequest, authority: String, providers: Set<String>, logger: Logger) async -> ErrorPage {
        let path = request.path ?? "/"
        let route = path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? path
        switch route {
        case Self.callbackPath where request.method == .get:
            let page = await self.callback(request, authority: authority, providers: providers, logger: logger)
            if page.status.kind == .clientError { logger.info("sign-in response refused", metadata: ["status": "\(page.status.code)", "reason": "\(page.detail)"]) }
            return page
        case Self.signOutPath where request.method == .get:
            // A link (or a page on another site) cannot sign the user out: only this page's button can.
            return ErrorPage(
                status: .ok, title: "Sign out", detail: "Sign out of the applications at this address?",
                action: ErrorPage.Action(label: "Sign out", path: Self.signOutPath)
            )
        case Self.signOutPath where request.method == .post:
            guard Self.isSameOrigin(request, authority: authority) else {
                logger.info("cross-site sign-out refused")
                return .badRequest("Sign-out must come from this site's own sign-out page.", status: .forbidden)
            }
            var fields = HTTPFields()
            for provider in providers.sorted() where oidc[provider] != nil {
                for cookie in Cookies.clearChunked(Self.sessionCookie(provider)) { fields.append(HTTPField(name: .setCookie, value: cookie)) }
            }
            logger.info("user signed out")
            return ErrorPage(status: .ok, title: "Signed out", detail: "You are signed out of the applications at this address.", headerFields: fields)
        default:
            return .notFound
        }
    }

    /// A POST from a page of this host: `Sec-Fetch-Site: same-origin`, or an `Origin` of this host.
    static func isSameOrigin(_ request: HTTPRequest, authority: String) -> Bool {
        if let site = request.headerFields[HTTPField.Name("Sec-Fetch-Site")!] { return site == "same-origin" }
        guard let origin = request.headerFields[HTTPField.Name("Origin")!] else { return false }
        return origin.lowercased() == "https://\(authority.lowercased())"
    }

    private func callback(_ request: HTTPRequest, authority: String, providers: Set<String>, logger: Logger) async -> ErrorPage {
        let items = URLComponents(string: "https://relay" + (request.path ?? "/"))?.queryItems ?? []
        func item(_ name: String) -> String? { items.first { $0.name == name }?.value }
        guard let state = item("state"), !state.isEmpty else {
            return .badRequest("This sign-in response has no state. Open the application again to sign in.")
        }
        let cookie = Self.loginCookie(state: state)
        guard let sealed = Cookies.value(cookie, in: request.headerFields),
            let pending = sealer.open(sealed, as: PendingSignIn.self, context: Self.sealingContext("login", cookie: cookie, authority: authority)),
            pending.state == state, Date().timeIntervalSince1970 - pending.issued < Self.signInLifetime,
            providers.contains(pending.provider), let provider = oidc[pending.provider]
        else {
            return .badRequest("This sign-in has expired or was started in another browser. Open the application again to sign in.")
        }
        guard self.consume(state: state) else {
            logger.warning("a sign-in response was replayed")
            return .badRequest("This sign-in response was already used. Open the application again to sign in.")
        }
        var clearLogin = HTTPFields()
        clearLogin.append(HTTPField(name: .setCookie, value: Cookies.clear(cookie)))
        if let error = item("error") {
            logger.info("the identity provider ended the sign-in with an error", metadata: ["error": "\(error)"])
            var page = ErrorPage.badRequest("Sign-in was not completed (the identity provider said \(error)). Open the application again to retry.")
            page.headerFields = clearLogin
            return page
        }
        guard let code = item("code"), !code.isEmpty else {
            return .badRequest("This sign-in response has no authorization code. Open the application again to sign in.")
        }
        let identity: Identity
        do {
            let claims = try await provider.exchange(code: code, redirectURI: Self.redirectURI(authority), verifier: pending.verifier, nonce: pending.nonce)
            identity = try provider.identity(from: claims)
        } catch let error as OIDCClient.ExchangeError {
            switch error {
            case .rejected(let reason):
                logger.warning("the identity provider refused the authorization code", metadata: ["reason": "\(reason)"])
                return .badRequest("The identity provider did not accept this sign-in. Open the application again to sign in.")
            case .failed(.providerUnavailable(let what)):
                logger.error("sign-in failed: the identity provider is unavailable", metadata: ["error": "\(what)"])
                return Pages.signInUnavailable
            case .failed(let failure):
                logger.warning("sign-in failed: the ID token was not accepted", metadata: ["reason": "\(failure)"])
                return ErrorPage(status: .unauthorized, title: "Sign-in failed", detail: "The sign-in could not be verified. Open the application again to retry.")
            }
        } catch {
            logger.warning("sign-in failed", metadata: ["reason": "\(error)"])
            return ErrorPage(status: .unauthorized, title: "Sign-in failed", detail: "The sign-in could not be verified. Open the application again to retry.")
        }
        let now = Date().timeIntervalSince1970
        let name = Self.sessionCookie(provider.name)
        let session = Session(identity: identity, issued: now, seen: now)
        guard let value = sealer.seal(session, context: Self.sealingContext("session", cookie: name, authority: authority)) else {
            return Pages.signInUnavailable
        }
        guard let cookies = Cookies.setChunked(name, value: value, maxAge: Int(sessions.lifetime.components.seconds), replacing: request.headerFields) else {
            logger.error(
                "the user's identity is too large for a session cookie; keep fewer claims or have the provider send fewer groups",
                metadata: ["user": "\(identity.userPrincipalName)", "groups": "\(identity.groups.count)", "bytes": "\(value.utf8.count)"]
            )
            return ErrorPage(
                status: .internalServerError, title: "Sign-in failed",
                detail: "Your account carries more information than a sign-in session can hold. Contact your administrator."
            )
        }
        logger.info("user signed in", metadata: ["user": "\(identity.userPrincipalName)", "provider": "\(provider.name)"])
        var fields = clearLogin
        for cookie in cookies { fields.append(HTTPField(name: .setCookie, value: cookie)) }
        fields[.location] = Self.safeReturnPath(pending.returnTo)
        return ErrorPage(status: .seeOther, title: "Signed in", detail: "Continue to the application.", headerFields: fields)
    }

    /// Marks a sign-in state as used; false when it already was (a replay).
    private func consume(state: String) -> Bool {
        let now = Date()
        return usedStates.withLock { used in
            if used.count > 10_000 || used.count % 256 == 0 {
                used = used.filter { now.timeIntervalSince($0.value) < Self.signInLifetime }
            }
            guard used[state] == nil else { return false }
            used[state] = now
            return true
        }
    }
}

/// The relay's authentication pages.
enum Pages {
    static let signInUnavailable = ErrorPage(
        status: .serviceUnavailable,
        title: "Sign-in unavailable",
        detail: "The identity provider cannot be reached right now. Try again in a few minutes; if it persists, contact your administrator."
    )

    static func unauthorized(realm: String, error: String?) -> ErrorPage {
        var challenge = "Bearer realm=\"\(realm.replacingOccurrences(of: "\"", with: ""))\""
        if let error { challenge += ", error=\"invalid_token\", error_description=\"\(error.replacingOccurrences(of: "\"", with: "'"))\"" }
        var fields = HTTPFields()
        fields[.wwwAuthenticate] = challenge
        return ErrorPage(
            status: .unauthorized,
            title: "Sign-in required",
            detail: error.map { "The credentials sent were not accepted: \($0)." } ?? "This application requires you to sign in.",
            headerFields: fields
        )
    }

    static func forbidden(user: String) -> ErrorPage {
        ErrorPage(
            status: .forbidden,
            title: "Access denied",
            detail: "You are signed in as \(user), who is not allowed to use this application. Ask your administrator for access."
        )
    }
}
