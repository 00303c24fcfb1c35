import Foundation
import SallyportHTTP
public import SallyportPluginAPI

/// The `sallyport-identity` tunnel field: the authenticated user as base64url-encoded JSON, so any name or
/// group (non-ASCII included) crosses as a plain token. Only the relay sets it; it strips any a client sends.
public enum IdentityField {
    /// The field value for `identity`: the same identity is always the same value.
    public static func encode(_ identity: Identity) -> String {
        Base64URL.encode((try? Self.encoder.encode(identity)) ?? Data())
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return encoder
    }()

    /// The identity in a field value, or nil when it is not one.
    public static func decode(_ value: String) -> Identity? {
        guard let data = Base64URL.decode(value) else { return nil }
        return try? JSONDecoder().decode(Identity.self, from: data)
    }
}
