import SwiftASN1

/// What a backend's `WWW-Authenticate: Negotiate <token>` on a success carries, read with swift-asn1.
///
/// A SPNEGO answer is a NegTokenResp (RFC 4178 §4.2.2): `[1] SEQUENCE { negState [0] ENUMERATED OPTIONAL,
/// supportedMech [1] OID OPTIONAL, responseToken [2] OCTET STRING OPTIONAL, mechListMIC [3] OCTET STRING
/// OPTIONAL }`. Go's gokrb5 answers `accept-completed` with no responseToken: it authenticated the user but
/// sends no Kerberos reply, which is the same as sending nothing (as lighttpd does), not a failed check.
enum NegotiateReply: Equatable {
    /// A reply to verify (SPNEGO with a responseToken, or a raw Kerberos AP-REP).
    case token
    /// SPNEGO `accept-completed` without a reply inside.
    case acceptedWithoutToken
    /// SPNEGO `reject`.
    case rejected

    static func classify(_ bytes: [UInt8]) -> NegotiateReply {
        guard let root = try? DER.parse(bytes), root.identifier == ASN1Identifier(tagWithNumber: 1, tagClass: .contextSpecific),
            case .constructed(let outer) = root.content, let sequence = outer.first(where: { _ in true }),
            sequence.identifier == .sequence, case .constructed(let fields) = sequence.content
        else {
            // Not a NegTokenResp: a raw Kerberos reply (or something GSS-API will judge).
            return .token
        }
        var state: Int?
        var hasResponseToken = false
        for field in fields {
            guard field.identifier.tagClass == .contextSpecific, case .constructed(let inner) = field.content,
                let value = inner.first(where: { _ in true })
            else { continue }
            switch field.identifier.tagNumber {
            case 0:
                if case .primitive(let raw) = value.content, raw.count == 1 { state = Int(raw[raw.startIndex]) }
            case 2:
                if case .primitive(let raw) = value.content, !raw.isEmpty { hasResponseToken = true }
            default:
                break
            }
        }
        if hasResponseToken { return .token }
        switch state {
        case 2?: return .rejected
        case 0?: return .acceptedWithoutToken
        default: return .token
        }
    }
}
