import Synchronization

/// Tokens whose signature was verified, by their exact text, so that an API client sending the same bearer
/// token on every request pays for one signature check rather than one per request.
///
/// Only what the signature vouches for is remembered: the claims. Issuer, audience and lifetime are checked
/// again on every request (``TokenVerifier/check(_:nonce:now:)``), so an expired token fails the moment it
/// expires. An entry holds for the key set it was verified under (its generation): once the issuer's keys are
/// fetched again, the token is verified again, so a token signed with a key the issuer withdrew fails as soon as
/// the relay knows. Entries are kept at most ``maximumAge``. Bounded: when full, expired entries go, and if none
/// has, everything does (a flood of distinct valid tokens costs signature checks, not memory).
final class VerifiedTokens: Sendable {
    struct Entry {
        let claims: TokenClaims
        /// The generation of the issuer's key set the signature was checked with.
        let generation: Int
        let until: ContinuousClock.Instant
    }

    private let entries = Mutex<[String: Entry]>([:])
    let capacity: Int
    let maximumAge: Duration

    init(capacity: Int = 10_000, maximumAge: Duration = .seconds(300)) {
        self.capacity = capacity
        self.maximumAge = maximumAge
    }

    /// What was remembered of `token` if its signature was verified less than ``maximumAge`` ago; the caller
    /// compares the entry's generation with its key set's.
    func entry(of token: String, now: ContinuousClock.Instant = .now) -> Entry? {
        self.entries.withLock { entries in
            guard let entry = entries[token] else { return nil }
            guard entry.until > now else {
                entries[token] = nil
                return nil
            }
            return entry
        }
    }

    /// Remembers that `token`'s signature was verified, with the key set of `generation`, and what it says.
    func remember(_ claims: TokenClaims, of token: String, generation: Int, now: ContinuousClock.Instant = .now) {
        self.entries.withLock { entries in
            if entries.count >= self.capacity {
                entries = entries.filter { $0.value.until > now }
                if entries.count >= self.capacity { entries.removeAll(keepingCapacity: true) }
            }
            entries[token] = Entry(claims: claims, generation: generation, until: now + self.maximumAge)
        }
    }

    var count: Int { self.entries.withLock { $0.count } }
}
