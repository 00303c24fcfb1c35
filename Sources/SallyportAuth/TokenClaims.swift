import Foundation
import JWTKit
import SallyportHTTP

/// A JSON value from a token, as decoded by `Codable` (never parsed by hand).
enum JSONValue: Codable, Sendable, Hashable {
    case string(String)
    case number(Double)
    case bool(Bool)
    case array([JSONValue])
    case object([String: JSONValue])
    case null

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .bool(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        case .null: try container.encodeNil()
        }
    }

    /// The value as a string, when it is one.
    var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// The value as a list of strings: a string is a list of one, numbers and booleans in their JSON spelling.
    var strings: [String] {
        switch self {
        case .string(let value): [value]
        case .number(let value): [value.rounded() == value && abs(value) < 1e15 ? String(Int64(value)) : String(value)]
        case .bool(let value): [value ? "true" : "false"]
        case .array(let values): values.flatMap(\.strings)
        case .object, .null: []
        }
    }
}

/// Reads a part of a compact JWT (`header.payload.signature`) before its signature is checked: only to pick
/// the key or the issuer whose keys then decide.
enum UnverifiedJWT {
    static func part<T: Decodable>(_ index: Int, of token: String, as type: T.Type) -> T? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let data = Base64URL.decode(String(parts[index])) else { return nil }
        return try? JSONDecoder().decode(T.self, from: data)
    }
}

/// Every claim of a verified token. jwt-kit checks the signature; ``TokenVerifier`` checks the claims.
struct TokenClaims: JWTPayload, Sendable {
    var all: [String: JSONValue]

    init(all: [String: JSONValue]) { self.all = all }

    init(from decoder: any Decoder) throws {
        self.all = try [String: JSONValue](from: decoder)
    }

    func encode(to encoder: any Encoder) throws { try all.encode(to: encoder) }

    /// Claims are checked by ``TokenVerifier`` after the signature, with the relay's rules.
    func verify(using algorithm: some JWTAlgorithm) async throws {}

    subscript(name: String) -> JSONValue? { all[name] }

    func string(_ name: String) -> String? { all[name]?.string }

    /// A NumericDate claim (`exp`, `nbf`, `iat`).
    func date(_ name: String) -> Date? {
        if case .number(let seconds)? = all[name] { return Date(timeIntervalSince1970: seconds) }
        return nil
    }

    /// `aud` as a list (a single string is a list of one).
    var audiences: [String] { all["aud"]?.strings ?? [] }
}
