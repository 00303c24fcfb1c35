import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SallyportConfig
import SallyportHTTP
import SallyportPluginAPI
import Synchronization

/// The relay as an OpenID Connect relying party: discovery, the authorization request with PKCE, and the code
/// exchange with ID token verification.
final class OIDCClient: Sendable {
    struct Discovery: Decodable, Sendable {
        var issuer: String
        var authorization_endpoint: String
        var token_endpoint: String
        var jwks_uri: String
        var end_session_endpoint: String?
    }

    private struct TokenResponse: Decodable {
        var id_token: String?
        var error: String?
        var error_description: String?
    }

    let name: String
    let settings: OIDCSettings
    /// The signing algorithms the provider is configured for (nil: by key).
    let algorithms: [String]?
    private let clientSecret: String
    private let client: HTTPClient
    private let verifier: TokenVerifier
    private let logger: Logger
    private let discovered = Mutex<(Discovery, KeySet)?>(nil)
    /// When discovery last failed: retried at most every ``discoveryRetryInterval`` so a down provider is not
    /// asked on every visit.
    private let lastFailure = Mutex<(ContinuousClock.Instant, AuthFailure)?>(nil)
    static let discoveryRetryInterval: Duration = .seconds(5)

    init(
        name: String, settings: OIDCSettings, claims: ClaimMapping, clockSkew: Duration, algorithms: [String]?, client: HTTPClient, logger: Logger
    ) throws {
        guard let data = FileManager.default.contents(atPath: settings.clientSecretFile) else {
            throw AuthSetupError("identityProviders.\(name).clientSecretFile: cannot read \(settings.clientSecretFile)")
        }
        let secret = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !secret.isEmpty else { throw AuthSetupError("identityProviders.\(name).clientSecretFile: \(settings.clientSecretFile) is empty") }
        self.name = name
        self.settings = settings
        self.algorithms = algorithms
        self.clientSecret = secret
        self.client = client
        self.logger = logger
        self.verifier = TokenVerifier(
            issuers: [settings.issuer], audiences: [settings.clientID], clockSkew: clockSkew, mapping: claims, provider: name
        )
    }

    /// The discovery document and the issuer's keys; fetched once, retried on every call until it works.
    func discovery() async throws(AuthFailure) -> (Discovery, KeySet) {
        if let done = self.discovered.withLock({ $0 }) { return done }
        if let (at, failure) = self.lastFailure.withLock({ $0 }), ContinuousClock.now - at < Self.discoveryRetryInterval { throw failure }
        do {
            return try await self.fetchDiscovery()
        } catch {
            self.lastFailure.withLock { $0 = (.now, error) }
            throw error
        }
    }

    private func fetchDiscovery() async throws(AuthFailure) -> (Discovery, KeySet) {
        let url = settings.issuer.hasSuffix("/") ? settings.issuer + ".well-known/openid-configuration" : settings.issuer + "/.well-known/openid-configuration"
        let document: Discovery
        do {
            let body = try await HTTPFetch.get(url, client: client, what: "discovery")
            document = try JSONDecoder().decode(Discovery.self, from: Data(body.utf8))
        } catch let failure as AuthFailure {
            throw failure
        } catch {
            throw .providerUnavailable("the discovery document at \(url) is not valid: \(error)")
        }
        guard document.issuer == settings.issuer else {
            throw .providerUnavailable("the discovery document's issuer \"\(document.issuer)\" is not the configured issuer \"\(settings.issuer)\"")
        }
        let keys = KeySet(source: .url(document.jwks_uri), algorithms: self.algorithms, client: client, logger: logger)
        return self.discovered.withLock { state in
            if let state { return state }
            state = (document, keys)
            return (document, keys)
        }
    }

    /// PKCE (RFC 7636, S256): a verifier and its challenge.
    static func pkce() -> (verifier: String, challenge: String) {
        let verifier = Base64URL.random(bytes: 32)
        return (verifier, Self.challenge(for: verifier))
    }

    /// PKCE's S256 challenge: base64url (no padding) of the SHA-256 of the verifier (RFC 7636 section 4.2).
    static func challenge(for verifier: String) -> String {
        Base64URL.encode(Data(SHA256.hash(data: Data(verifier.utf8))))
    }

    /// Where to send the browser to sign in.
    func authorizationURL(redirectURI: String, state: String, nonce: String, challenge: String) async throws(AuthFailure) -> String {
        let (document, _) = try await self.discovery()
        guard var components = URLComponents(string: document.authorization_endpoint) else {
            throw .providerUnavailable("the authorization endpoint \(document.authorization_endpoint) is not a URL")
        }
        var items = components.queryItems ?? []
        items += [
            URLQueryItem(name: "response_type", value: "code"),
            URLQueryItem(name: "client_id", value: settings.clientID),
            URLQueryItem(name: "redirect_uri", value: redirectURI),
            URLQueryItem(name: "scope", value: settings.scopes.joined(separator: " ")),
            URLQueryItem(name: "state", value: state),
            URLQueryItem(name: "nonce", value: nonce),
            URLQueryItem(name: "code_challenge", value: challenge),
            URLQueryItem(name: "code_challenge_method", value: "S256"),
        ]
        components.percentEncodedQuery = FormEncoding.encode(items)
        guard let url = components.string else { throw .providerUnavailable("cannot build the authorization URL") }
        return url
    }

    /// The outcome of a code exchange.
    enum ExchangeError: Error {
        /// The provider refused the code (used, expired, wrong verifier): the user should sign in again.
        case rejected(String)
        case failed(AuthFailure)
    }

    /// Redeems the authorization code and verifies the ID token; returns its claims.
    func exchange(code: String, redirectURI: String, verifier codeVerifier: String, nonce: String) async throws(ExchangeError) -> TokenClaims {
        let (document, keys): (Discovery, KeySet)
        do { (document, keys) = try await self.discovery() } catch { throw .failed(error) }
        var form = [
            URLQueryItem(name: "grant_type", value: "authorization_code"),
            URLQueryItem(name: "code", value: code),
            URLQueryItem(name: "redirect_uri", value: redirectURI),
            URLQueryItem(name: "code_verifier", value: codeVerifier),
        ]
        var request = HTTPClientRequest(url: document.token_endpoint)
        request.method = .POST
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        switch settings.tokenEndpointAuth {
        case .clientSecretBasic:
            // RFC 6749 §2.3.1: id and secret are form-encoded before they are joined.
            let pair = FormEncoding.component(settings.clientID) + ":" + FormEncoding.component(clientSecret)
            request.headers.add(name: "Authorization", value: "Basic " + Data(pair.utf8).base64EncodedString())
        case .clientSecretPost:
            form += [URLQueryItem(name: "client_id", value: settings.clientID), URLQueryItem(name: "client_secret", value: clientSecret)]
        }
        request.body = .bytes(ByteBuffer(string: FormEncoding.encode(form)))

        let response: (status: Int, body: String)
        do {
            response = try await HTTPFetch.execute(request, client: client, what: "token", acceptErrors: true)
        } catch let failure as AuthFailure {
            throw .failed(failure)
        } catch {
            throw .failed(.providerUnavailable("\(error)"))
        }
        guard let tokens = try? JSONDecoder().decode(TokenResponse.self, from: Data(response.body.utf8)) else {
            throw .failed(.providerUnavailable("the token endpoint answered \(response.status) with a body that is not a token response"))
        }
        guard response.status == 200, let idToken = tokens.id_token else {
            throw .rejected(LogText.escaped([tokens.error, tokens.error_description].compactMap { $0 }.joined(separator: ": "), limit: 500))
        }
        do {
            let claims = try await keys.verify(idToken)
            try self.verifier.check(claims, nonce: nonce)
            return claims
        } catch {
            throw .failed(error)
        }
    }

    func identity(from claims: TokenClaims) throws(AuthFailure) -> Identity {
        try verifier.identity(from: claims)
    }
}

/// `application/x-www-form-urlencoded` with Foundation's percent-encoding: only unreserved characters stay.
enum FormEncoding {
    static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    static func component(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? ""
    }

    static func encode(_ items: [URLQueryItem]) -> String {
        items.map { component($0.name) + "=" + component($0.value ?? "") }.joined(separator: "&")
    }
}
