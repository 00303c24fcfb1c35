import HTTPTypes
import Logging
import SallyportHTTP
import SallyportPluginAPI

/// A request as the authenticators see it.
struct AuthenticationRequest: Sendable {
    var head: HTTPRequest
    /// The host the user asked for (sessions and sign-ins are bound to it).
    var authority: String
    var logger: Logger
}

/// A user an authenticator recognised, and cookies to set on the response.
struct Authenticated: Sendable {
    var identity: Identity
    var setCookies: [String] = []
}

/// An answer that ends the request at the relay (401 for a bad token, a sign-in redirect, 503 when a provider
/// cannot be reached).
struct AuthenticationAnswer: Error {
    var page: ErrorPage
}

/// One way the relay learns who a user is, in the manner of hummingbird-auth: an identity when the request
/// proves one, nil to let the next authenticator try, or a thrown answer that ends the request.
protocol Authenticator: Sendable {
    func authenticate(_ request: AuthenticationRequest) async throws(AuthenticationAnswer) -> Authenticated?
    /// The same decision when it needs no I/O (a token verified before, a session cookie), so that the request
    /// never leaves its event loop; nil when it must wait (the default).
    func authenticateImmediately(_ request: AuthenticationRequest) -> Result<Authenticated?, AuthenticationAnswer>?
}

extension Authenticator {
    func authenticateImmediately(_ request: AuthenticationRequest) -> Result<Authenticated?, AuthenticationAnswer>? { nil }
}

/// A signed JWT from the provider's header (an API client, or a gateway in front of the relay).
struct JWTAuthenticator: Authenticator {
    let provider: JWTProvider

    func authenticate(_ request: AuthenticationRequest) async throws(AuthenticationAnswer) -> Authenticated? {
        guard let token = self.provider.token(in: request.head.headerFields) else { return nil }
        do {
            return Authenticated(identity: try await self.provider.authenticate(token: token))
        } catch {
            throw self.answer(for: error, request)
        }
    }

    func authenticateImmediately(_ request: AuthenticationRequest) -> Result<Authenticated?, AuthenticationAnswer>? {
        guard let token = self.provider.token(in: request.head.headerFields) else { return .success(nil) }
        do {
            guard let identity = try self.provider.authenticateKnown(token: token) else { return nil }
            return .success(Authenticated(identity: identity))
        } catch {
            return .failure(self.answer(for: error, request))
        }
    }

    private func answer(for error: AuthFailure, _ request: AuthenticationRequest) -> AuthenticationAnswer {
        if case .providerUnavailable = error {
            request.logger.error("cannot check a token: the issuer's keys are unavailable", metadata: ["provider": "\(self.provider.name)", "error": "\(error)"])
            return AuthenticationAnswer(page: Pages.signInUnavailable)
        }
        request.logger.info("token refused", metadata: ["provider": "\(self.provider.name)", "reason": "\(error)"])
        return AuthenticationAnswer(page: Pages.unauthorized(realm: request.authority, error: error.description))
    }
}
