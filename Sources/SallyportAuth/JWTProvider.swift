import AsyncHTTPClient
import Foundation
import HTTPTypes
import Logging
import SallyportConfig
import SallyportHTTP
import SallyportPluginAPI
import Synchronization

/// Trusted JWTs: from `Authorization: Bearer` or a gateway's assertion header, checked against each
/// trusted issuer's keys.
struct JWTProvider: Sendable {
    let name: String
    let settings: JWTSettings
    let keysByIssuer: [String: KeySet]
    let verifier: TokenVerifier
    /// Tokens whose signature was checked already: a client's next request with the same token skips it.
    let verified = VerifiedTokens()

    init(
        name: String, settings: JWTSettings, claims: ClaimMapping, clockSkew: Duration, algorithms: [String]?, client: HTTPClient, logger: Logger
    ) {
        self.name = name
        self.settings = settings
        var keys: [String: KeySet] = [:]
        for issuer in settings.issuers {
            keys[issuer.issuer] = KeySet(source: issuer.keys, algorithms: algorithms, client: client, logger: logger)
        }
        self.keysByIssuer = keys
        self.verifier = TokenVerifier(
            issuers: Set(settings.issuers.map(\.issuer)), audiences: settings.audiences, clockSkew: clockSkew, mapping: claims, provider: name
        )
    }

    /// The field the token is read from.
    var fieldName: HTTPField.Name {
        switch settings.token {
        case .authorizationBearer: .authorization
        case .header(let name): HTTPField.Name(name) ?? .authorization
        }
    }

    /// The token in the request, if any: nil when the field is absent (or not a Bearer credential).
    func token(in fields: HTTPFields) -> String? {
        let values = fields[values: fieldName]
        guard values.count == 1, let value = values.first else { return nil }
        switch settings.token {
        case .authorizationBearer:
            let parts = value.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
            return String(parts[1].trimmingASCIISpaces())
        case .header:
            return String(Substring(value).trimmingASCIISpaces())
        }
    }

    /// Verifies the token and returns the user's identity.
    /// Issuer, audience and lifetime are checked on every request; the signature once per token and key set
    /// (for at most ``VerifiedTokens/maximumAge``).
    func authenticate(token: String) async throws(AuthFailure) -> Identity {
        if let identity = try self.authenticateKnown(token: token) { return identity }
        // Which issuer's keys to use comes from the (still unverified) payload; the signature then decides.
        guard let issuer = Self.unverifiedIssuer(token) else { throw .malformed }
        guard let keys = keysByIssuer[issuer] else { throw .wrongIssuer(issuer) }
        // Read before verifying: a set fetched meanwhile makes the next request verify again.
        let generation = keys.generation.load(ordering: .acquiring)
        let claims = try await keys.verify(token)
        self.verified.remember(claims, of: token, generation: generation)
        try verifier.check(claims)
        return try verifier.identity(from: claims)
    }

    /// The identity of a token whose signature was verified before with the issuer's current keys (its claims
    /// checked again now), without waiting; nil when its signature must be verified.
    func authenticateKnown(token: String) throws(AuthFailure) -> Identity? {
        guard let known = self.verified.entry(of: token), let keys = known.claims.string("iss").flatMap({ keysByIssuer[$0] }),
            known.generation == keys.generation.load(ordering: .acquiring)
        else { return nil }
        try verifier.check(known.claims)
        return try verifier.identity(from: known.claims)
    }

    /// The `iss` of a token whose signature is not checked yet.
    static func unverifiedIssuer(_ token: String) -> String? {
        UnverifiedJWT.part(1, of: token, as: TokenClaims.self)?.string("iss")
    }
}
