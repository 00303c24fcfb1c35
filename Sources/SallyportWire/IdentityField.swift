import Foundation
import SallyportHTTP
public import SallyportPluginAPI
import Synchronization

/// The `sallyport-identity` tunnel field: the authenticated user as base64url-encoded JSON, so any name or
/// group (non-ASCII included) crosses as a plain token. Only the relay sets it; it strips any a client sends.
///
/// A user's requests carry the same identity over and over: the last identities encoded and decoded are
/// remembered (a thousand each, per process), so each costs JSON once, not on every request.
public enum IdentityField {
    /// The field value for `identity`: the same identity is always the same value.
    public static func encode(_ identity: Identity) -> String {
        if let known = encoded.value(for: identity) { return known }
        let value = Base64URL.encode((try? Self.encoder.encode(identity)) ?? Data())
        encoded.remember(value, for: identity)
        return value
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return encoder
    }()

    private static let decoder = JSONDecoder()
    private static let encoded = Memo<Identity, String>()
    private static let decoded = Memo<String, Identity>()

    /// The identity in a field value, or nil when it is not one.
    public static func decode(_ value: String) -> Identity? {
        if let known = decoded.value(for: value) { return known }
        guard let data = Base64URL.decode(value), let identity = try? Self.decoder.decode(Identity.self, from: data) else { return nil }
        decoded.remember(identity, for: value)
        return identity
    }
}

/// The results of a pure function for the keys last asked about: bounded (emptied when full), thread-safe.
final class Memo<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private let values = Mutex<[Key: Value]>([:])
    let capacity: Int

    init(capacity: Int = 1024) { self.capacity = capacity }

    func value(for key: Key) -> Value? { self.values.withLock { $0[key] } }

    func remember(_ value: Value, for key: Key) {
        self.values.withLock { values in
            if values.count >= self.capacity { values.removeAll(keepingCapacity: true) }
            values[key] = value
        }
    }
}
