import Foundation
import SallyportConfig
import SallyportPluginAPI

/// Checks a signed token's claims and maps them to an ``Identity``.
struct TokenVerifier: Sendable {
    /// Accepted `iss` values.
    var issuers: Set<String>
    /// Accepted `aud` values; the token must name one.
    var audiences: [String]
    var clockSkew: Duration
    var mapping: ClaimMapping
    var provider: String

    /// Checks issuer, audience and lifetime (and `nonce` for ID tokens). `exp` is required.
    func check(_ claims: TokenClaims, nonce: String? = nil, now: Date = Date()) throws(AuthFailure) {
        let skew = TimeInterval(clockSkew.components.seconds)
        let issuer = claims.string("iss") ?? ""
        guard issuers.contains(issuer) else { throw .wrongIssuer(issuer) }
        guard claims.audiences.contains(where: { audiences.contains($0) }) else { throw .wrongAudience }
        guard let expiry = claims.date("exp") else { throw .missingClaim("exp") }
        guard now.timeIntervalSince(expiry) < skew else { throw .expired }
        if let notBefore = claims.date("nbf"), notBefore.timeIntervalSince(now) > skew { throw .notYetValid }
        if let issuedAt = claims.date("iat"), issuedAt.timeIntervalSince(now) > skew { throw .notYetValid }
        if let nonce {
            guard claims.string("nonce") == nonce else { throw .nonceMismatch }
        }
    }

    /// The identity the connector receives.
    func identity(from claims: TokenClaims) throws(AuthFailure) -> Identity {
        guard let subject = claims.string("sub"), !subject.isEmpty else { throw .missingClaim("sub") }
        // An email address the provider says it has not verified never names the user (anyone could claim it).
        let unverifiedEmail = claims["email_verified"] == .bool(false)
        let usable = mapping.userPrincipalName.filter { !(unverifiedEmail && $0 == mapping.email) }
        guard let upn = usable.lazy.compactMap({ claims.string($0) }).first(where: { !$0.isEmpty }) else {
            throw .missingClaim(mapping.userPrincipalName.joined(separator: " or "))
        }
        var kept: [String: [String]] = [:]
        for name in mapping.keep {
            if let value = claims[name] { kept[name] = value.strings }
        }
        return Identity(
            userPrincipalName: upn,
            subject: subject,
            issuer: claims.string("iss") ?? "",
            provider: provider,
            email: claims.string(mapping.email),
            displayName: claims.string(mapping.displayName),
            groups: claims[mapping.groups]?.strings ?? [],
            claims: kept
        )
    }
}
