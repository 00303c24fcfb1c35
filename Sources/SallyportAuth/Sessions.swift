import Foundation
import HTTPTypes
import Logging
import SallyportConfig
import SallyportHTTP
import SallyportPluginAPI

/// A signed-in user's session: sealed into a host-only cookie per provider, bound to the cookie's name and
/// the host, with an absolute lifetime and an idle timeout.
struct Session: Codable {
    var identity: Identity
    var issued: Double
    var seen: Double
}

extension PreAuthenticator {
    /// What a sealed cookie is bound to: its purpose, its name and the host it was set for.
    static func sealingContext(_ purpose: String, cookie: String, authority: String) -> String {
        "\(purpose)|\(cookie)|\(authority.lowercased())"
    }

    static func sessionCookie(_ provider: String) -> String { "\(RelayNamespace.cookiePrefix)\(provider)" }
}

/// The session cookie of an OIDC provider: the user it names while it is within its lifetimes; its idle clock
/// is renewed now and then.
struct SessionAuthenticator: Authenticator {
    let provider: String
    let sealer: CookieSealer
    let sessions: SessionConfig

    func authenticate(_ request: AuthenticationRequest) async throws(AuthenticationAnswer) -> Authenticated? {
        self.session(of: request)
    }

    func authenticateImmediately(_ request: AuthenticationRequest) -> Result<Authenticated?, AuthenticationAnswer>? {
        .success(self.session(of: request))
    }

    private func session(of request: AuthenticationRequest) -> Authenticated? {
        let name = PreAuthenticator.sessionCookie(self.provider)
        let context = PreAuthenticator.sealingContext("session", cookie: name, authority: request.authority)
        let now = Date().timeIntervalSince1970
        guard let sealed = Cookies.chunkedValue(name, in: request.head.headerFields) else { return nil }
        let lifetime = Double(self.sessions.lifetime.components.seconds)
        let idle = Double(self.sessions.idleTimeout.components.seconds)
        guard var session = self.sealer.open(sealed, as: Session.self, context: context), now - session.issued < lifetime, now - session.seen < idle else {
            request.logger.debug("session cookie expired, tampered with or from another key; signing in again")
            return nil
        }
        var setCookies: [String] = []
        // Keep the idle clock going without rewriting the cookie on every request.
        if now - session.seen > min(60, idle / 4) {
            session.seen = now
            if let value = self.sealer.seal(session, context: context),
                let cookies = Cookies.setChunked(name, value: value, maxAge: Int(session.issued + lifetime - now), replacing: request.head.headerFields)
            {
                setCookies += cookies
            }
        }
        return Authenticated(identity: session.identity, setCookies: setCookies)
    }
}
