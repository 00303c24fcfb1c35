import SallyportHTTP

/// Why a token or sign-in was not accepted. The description goes to the relay's log and, for token errors,
/// into `WWW-Authenticate`'s `error_description`; it never contains the token.
public enum AuthFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// Not a JWT (three base64url parts with a JSON header and payload).
    case malformed
    /// The token names a key the issuer does not publish (after refetching its keys).
    case unknownKey
    /// The signature does not verify with the issuer's key.
    case badSignature
    /// Past `exp` (plus clock skew).
    case expired
    /// Before `nbf` (minus clock skew).
    case notYetValid
    /// `iss` is not a trusted issuer.
    case wrongIssuer(String)
    /// `aud` names none of the accepted audiences.
    case wrongAudience
    /// The ID token's `nonce` is not the one sent with this sign-in.
    case nonceMismatch
    /// A claim the identity needs is missing.
    case missingClaim(String)
    /// The identity provider could not be reached or answered with an error; the text says which call.
    case providerUnavailable(String)

    public var description: String {
        switch self {
        case .malformed: "the token is not a well-formed JWT"
        case .unknownKey: "the token was signed with a key the issuer does not publish"
        case .badSignature: "the token's signature does not verify"
        case .expired: "the token has expired"
        case .notYetValid: "the token is not valid yet"
        case .wrongIssuer(let issuer): "the token's issuer \"\(LogText.escaped(issuer, limit: 200))\" is not trusted"
        case .wrongAudience: "the token is not meant for this relay (audience)"
        case .nonceMismatch: "the ID token's nonce does not match this sign-in"
        case .missingClaim(let name): "the token has no \(name) claim"
        case .providerUnavailable(let what): "the identity provider is unavailable: \(what)"
        }
    }
}
