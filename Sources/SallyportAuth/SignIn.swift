import Crypto
import Foundation
import HTTPTypes
import Logging
import SallyportHTTP
import SallyportConfig
import SallyportPluginAPI
import Synchronization

/// The OIDC code flow: a browser without a session is sent to the provider (state, nonce and PKCE verifier in
/// a sealed, short-lived login cookie); the provider sends it back to the callback, where the code is
/// exchanged, the ID token checked, and a session set.
struct PendingSignIn: Codable {
    var state: String
    var nonce: String
    var verifier: String
    var returnTo: String
    var provider: String
    var issued: Double
}

/// The last of an OIDC app's authenticators: a browser navigation is sent to sign in; anything else (an API
/// call, a script) passes on and gets 401.
struct SignInAuthenticator: Authenticator {
    let provider: OIDCClient
    let sealer: CookieSealer

    func authenticate(_ request: AuthenticationRequest) async throws(AuthenticationAnswer) -> Authenticated? {
        guard PreAuthenticator.isBrowserNavigation(request.head) else { return nil }
        let state = Base64URL.random()
        let nonce = Base64URL.random()
        let pkce = OIDCClient.pkce()
        let returnTo = PreAuthenticator.safeReturnPath(request.head.path ?? "/")
        let url: String
        do {
            url = try await self.provider.authorizationURL(
                redirectURI: PreAuthenticator.redirectURI(request.authority), state: state, nonce: nonce, challenge: pkce.challenge
            )
        } catch {
            request.logger.error("cannot start sign-in: the identity provider is unavailable", metadata: ["provider": "\(self.provider.name)", "error": "\(error)"])
            throw AuthenticationAnswer(page: Pages.signInUnavailable)
        }
        let pending = PendingSignIn(
            state: state, nonce: nonce, verifier: pkce.verifier, returnTo: returnTo, provider: self.provider.name, issued: Date().timeIntervalSince1970
        )
        let cookie = PreAuthenticator.loginCookie(state: state)
        guard let sealed = self.sealer.seal(pending, context: PreAuthenticator.sealingContext("login", cookie: cookie, authority: request.authority)) else {
            throw AuthenticationAnswer(page: Pages.signInUnavailable)
        }
        var fields = HTTPFields()
        fields[.location] = url
        fields.append(HTTPField(name: .setCookie, value: Cookies.set(cookie, value: sealed, maxAge: Int(PreAuthenticator.signInLifetime))))
        throw AuthenticationAnswer(page: ErrorPage(status: .found, title: "Signing in", detail: "Continue to your organisation's sign-in page.", headerFields: fields))
    }
}

extension PreAuthenticator {
    /// A top-level browser visit that can be redirected to sign in, rather than an API or script call.
    static func isBrowserNavigation(_ request: HTTPRequest) -> Bool {
        guard request.method == .get || request.method == .head else { return false }
        let fields = request.headerFields
        if fields[.authorization] != nil || fields[HTTPField.Name("X-Requested-With")!] != nil { return false }
        let accept = (fields[.accept] ?? "").lowercased()
        if accept.contains("text/html") { return true }
        return !accept.contains("json")
    }

    static func loginCookie(state: String) -> String { "\(RelayNamespace.cookiePrefix)login-\(state.prefix(16))" }

    static func redirectURI(_ authority: String) -> String { "https://\(authority.lowercased())\(callbackPath)" }

    /// A path on this host to come back to: never another host (`//evil`, `/\evil`), never the relay's own paths.
    static func safeReturnPath(_ path: String) -> String {
        guard path.hasPrefix("/"), !path.hasPrefix("//"), !path.hasPrefix("/\\"), !path.hasPrefix(RelayNamespace.pathPrefix) else { return "/" }
        return path
    }

    func callback(_ request: HTTPRequest, authority: String, providers: Set<String>, logger: Logger) async -> ErrorPage {
        let items = URLComponents(string: "https://relay" + (request.path ?? "/"))?.queryItems ?? []
        func item(_ name: String) -> String? { items.first { $0.name == name }?.value }
        guard let state = item("state"), !state.isEmpty else {
            return .badRequest("This sign-in response has no state. Open the application again to sign in.")
        }
        let cookie = Self.loginCookie(state: state)
        guard let sealed = Cookies.value(cookie, in: request.headerFields),
            let pending = sealer.open(sealed, as: PendingSignIn.self, context: Self.sealingContext("login", cookie: cookie, authority: authority)),
            pending.state == state, Date().timeIntervalSince1970 - pending.issued < Self.signInLifetime,
            providers.contains(pending.provider), let provider = self.providers.oidc[pending.provider]
        else {
            return .badRequest("This sign-in has expired or was started in another browser. Open the application again to sign in.")
        }
        guard await self.consume(state: state, logger: logger) else {
            logger.warning("a sign-in response was replayed")
            return .badRequest("This sign-in response was already used. Open the application again to sign in.")
        }
        var clearLogin = HTTPFields()
        clearLogin.append(HTTPField(name: .setCookie, value: Cookies.clear(cookie)))
        if let said = item("error") {
            let error = LogText.escaped(said, limit: 200)
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

    /// Marks a sign-in state as used; false when it already was (a replay), here or, with a ledger, at any
    /// relay sharing it. If the ledger cannot be reached the state is accepted on this relay's word: the
    /// provider still takes the code once only, and the login cookie binds the state to the browser.
    private func consume(state: String, logger: Logger) async -> Bool {
        let now = Date()
        guard usedStates.withLock({ $0.consume(state, now: now) }) else { return false }
        guard let ledger else { return true }
        let key = SHA256.hash(data: Data(state.utf8)).map { String(format: "%02x", $0) }.joined()
        do {
            return try await ledger.use(key, until: now.addingTimeInterval(Self.signInLifetime))
        } catch {
            logger.warning("cannot mark the sign-in state used for the other relays; accepted on this relay's word", metadata: ["error": "\(error)"])
            return true
        }
    }
}
