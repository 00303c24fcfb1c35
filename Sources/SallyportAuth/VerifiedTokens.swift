import Synchronization

/// Tokens whose signature was verified, by their exact text, so that an API client sending the same bearer
/// token on every request pays for one signature check rather than one per request.
///
/// Only what the signature vouches for is remembered: the claims. Issuer, audience and lifetime are checked
/// again on every request (``TokenVerifier/check(_:nonce:now:)``), so an expired token fails the moment it
/// expires. An entry is kept at most ``maximumAge``, so a key withdrawn from the issuer's key set stops
/// vouching for tokens within that time of the set being fetched again. Bounded: when full, expired entries
/// go, and if none has, everything does (a flood of distinct valid tokens costs signature checks, not memory).
final class VerifiedTokens: Sendable {
    private struct Entry {
        let claims: TokenClaims
        let until: ContinuousClock.Instant
    }

    private let entries = Mutex<[String: Entry]>([:])
    let capacity: Int
    let maximumAge: Duration

    init(capacity: Int = 10_000, maximumAge: Duration = .seconds(300)) {
        self.capacity = capacity
        self.maximumAge = maximumAge
    }

    /// The claims of `token` if its signature was verified less than ``maximumAge`` ago.
    func claims(of token: String, now: ContinuousClock.Instant = .now) -> TokenClaims? {
        self.entries.withLock { entries in
            guard let entry = entries[token] else { return nil }
            guard entry.until > now else {
                entries[token] = nil
                return nil
            }
            return entry.claims
        }
    }

    /// Remembers that `token`'s signature was verified and what it says.
    func remember(_ claims: TokenClaims, of token: String, now: ContinuousClock.Instant = .now) {
        self.entries.withLock { entries in
            if entries.count >= self.capacity {
                entries = entries.filter { $0.value.until > now }
                if entries.count >= self.capacity { entries.removeAll(keepingCapacity: true) }
            }
            entries[token] = Entry(claims: claims, until: now + self.maximumAge)
        }
    }

    var count: Int { self.entries.withLock { $0.count } }
}
