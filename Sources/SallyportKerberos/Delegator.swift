import Glibc
import Synchronization

/// The user a ticket is obtained for, as the identity gives it.
public enum DelegatedUser: Sendable, Hashable, CustomStringConvertible {
    /// A user principal name (`alice@corp.example.com`): `alice@CORP.EXAMPLE.COM` when its suffix is the
    /// connector's realm, otherwise an enterprise name the KDC resolves.
    case upn(String)
    /// An account name (`alice`) in the connector's default realm.
    case account(String)

    public var description: String {
        switch self {
        case .upn(let name), .account(let name): name
        }
    }

    /// Whether `name` can be used: no realm separators beyond UPN's one `@`, no `/` (service names), no `\`,
    /// whitespace or control characters.
    public static func isAcceptable(_ name: String, allowsAt: Bool) -> Bool {
        let scalars = name.unicodeScalars
        guard !scalars.isEmpty, scalars.count <= 256 else { return false }
        let ats = scalars.filter { $0 == "@" }.count
        if allowsAt ? ats > 1 : ats > 0 { return false }
        if scalars.first == "@" || scalars.last == "@" { return false }
        return !scalars.contains { $0 == "/" || $0 == "\\" || $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }
    }
}

/// Obtains Kerberos credentials on users' behalf: the connector's own credential from its keytab (renewed
/// before it expires) and a bounded, single-flight cache of impersonated credentials per (user, SPN, mechanism).
///
/// One impersonated credential handle costs one S4U2Self; the first context made from it costs one
/// S4U2Proxy, whose ticket stays in the handle's memory cache. So the cache keeps handles, warmed with one
/// context, and every later token for that user and app needs no KDC.
public final class KerberosDelegator: Sendable {
    /// Where the connector's credential comes from and how long things are kept.
    public struct Settings: Sendable, Hashable {
        /// The keytab file.
        public var keytab: String
        /// The connector's principal; nil: the keytab's first.
        public var principal: String?
        /// Credentials are replaced this long before they expire.
        public var renewBefore: Duration
        /// Most cached (user, SPN, mechanism) credentials.
        public var maxEntries: Int
        /// How long new exchanges fail at once after no KDC answered.
        public var kdcRetryDelay: Duration
        /// How long a cached user credential is used without the KDC confirming the user (one S4U2Self): a user
        /// disabled or deleted in the directory is refused within this.
        public var revalidateInterval: Duration

        public init(
            keytab: String = "/etc/krb5.keytab", principal: String? = nil, renewBefore: Duration = .seconds(300), maxEntries: Int = 10_000,
            kdcRetryDelay: Duration = .seconds(2), revalidateInterval: Duration = .seconds(300)
        ) {
            self.keytab = keytab
            self.principal = principal
            self.renewBefore = renewBefore
            self.maxEntries = maxEntries
            self.kdcRetryDelay = kdcRetryDelay
            self.revalidateInterval = revalidateInterval
        }
    }

    /// Runs blocking work (KDC exchanges) off the caller's thread and calls back when done.
    public typealias BlockingExecutor = @Sendable (@escaping @Sendable () -> Void) -> Void

    public let settings: Settings
    private let executor: BlockingExecutor
    private let clock = ContinuousClock()

    private struct Own {
        var credential: GSSCredential
        var refreshAt: ContinuousClock.Instant
        var realm: String
    }

    private struct Key: Hashable {
        var user: DelegatedUser
        var spn: String
        var mechanism: GSSMechanism
    }

    private struct Entry {
        var credential: GSSCredential?
        var refreshAt: ContinuousClock.Instant
        var expiresAt: ContinuousClock.Instant
        var lastUse: UInt64
        var flight: Task<Cached, any Error>?
        /// When the KDC last vouched for the user (the credential was obtained, or revalidated).
        var validatedAt: ContinuousClock.Instant
        /// When a request last used it.
        var usedAt: ContinuousClock.Instant
    }

    private struct Cached: Sendable {
        var credential: GSSCredential
        var lifetime: Duration
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        var recency = RecencyQueue<Key>()
        var tick: UInt64 = 0

        /// Records a use of `key` at `tick`, keeping the recency queue small.
        mutating func noteUse(_ key: Key, at tick: UInt64) {
            var recency = self.recency
            self.recency = RecencyQueue()
            // Compacted before this use is added: its key may not have an entry yet.
            recency.compact(liveCount: self.entries.count) { key, tick in self.entries[key]?.lastUse == tick }
            recency.touched(key, at: tick)
            self.recency = recency
        }

        /// After a KDC could not be reached, new exchanges fail at once until then: an unreachable KDC can take
        /// seconds per attempt, and every waiting attempt would hold a thread of the blocking pool.
        var kdcDownUntil: ContinuousClock.Instant?
    }


    private let state = Mutex(State())
    /// The connector's credential per mechanism. Read under this lock only; obtaining one happens outside it.
    private let own = Mutex<[GSSMechanism: Own]>([:])
    /// Held while one thread obtains the connector's credential, so concurrent renewals make one AS exchange.
    /// Only renewals wait on it (on the blocking pool), never a reader of a credential that is still fresh.
    private let obtaining = Mutex<Void>(())
    private let ccacheSerial = Atomic<Int>(0)

    /// What the delegator tells its observer (the connector's metrics).
    public enum Event: Sendable {
        /// A request's credential came from the cache without KDC traffic.
        case cacheHit
        /// A request needed an exchange with the KDC (its own, or one already under way for the same user and SPN).
        case cacheMiss
        /// An exchange (S4U2Self and S4U2Proxy) ended: how long it took, and its failure category if it failed.
        case exchange(Duration, failure: DelegationFailure?)
    }

    private let observer: (@Sendable (Event) -> Void)?

    public init(settings: Settings, executor: @escaping BlockingExecutor, observer: (@Sendable (Event) -> Void)? = nil) {
        self.settings = settings
        self.executor = executor
        self.observer = observer
    }

    /// The number of cached credentials (for tests, status and metrics).
    public var cachedCount: Int { self.state.withLock { $0.entries.count } }

    // MARK: The connector's own credential

    /// The connector's credential for `mechanism`, obtained from the keytab when missing or within
    /// `renewBefore` of expiring. Blocks on the KDC: call off the event loops.
    public func connectorCredential(_ mechanism: GSSMechanism, renew: Bool = false) throws(DelegationError) -> (credential: GSSCredential, realm: String) {
        if !renew, let held = self.freshOwn(mechanism) { return held }
        let result = self.obtaining.withLock { _ -> Result<(GSSCredential, String), DelegationError> in
            // Another thread may have renewed it while this one waited.
            if !renew, let held = self.freshOwn(mechanism) { return .success(held) }
            let obtained = self.obtainOwn(mechanism)
            if case .success(let fresh) = obtained { self.own.withLock { $0[mechanism] = fresh } }
            return obtained.map { ($0.credential, $0.realm) }
        }
        return try result.get()
    }

    private func freshOwn(_ mechanism: GSSMechanism) -> (GSSCredential, String)? {
        self.own.withLock { own in
            guard let held = own[mechanism], self.clock.now < held.refreshAt else { return nil }
            return (held.credential, held.realm)
        }
    }

    /// One AS exchange from the keytab. Blocks on the KDC.
    private func obtainOwn(_ mechanism: GSSMechanism) -> Result<Own, DelegationError> {
        guard access(self.settings.keytab, R_OK) == 0 else {
            let reason = String(cString: strerror(errno))
            return .failure(DelegationError(step: .keytab, failure: .connectorCredential, detail: "cannot read keytab \(self.settings.keytab): \(reason)"))
        }
        do {
            // A fresh memory cache each time: the library would otherwise keep using the old TGT.
            let serial = self.ccacheSerial.wrappingAdd(1, ordering: .relaxed).newValue
            let credential = try GSSCredential.fromKeytab(
                self.settings.keytab, principal: self.settings.principal, ccache: "MEMORY:sallyport-connector-\(getpid())-\(serial)", mechanism: mechanism
            )
            let lifetime = Duration.seconds(Int(try credential.remainingLifetime()))
            let name = try credential.name()
            let realm = name.split(separator: "@").last.map(String.init) ?? ""
            return .success(Own(credential: credential, refreshAt: self.clock.now + Self.refreshDelay(lifetime: lifetime, renewBefore: self.settings.renewBefore), realm: realm))
        } catch let error as GSSError {
            // SPNEGO hides the Kerberos mechanism's reason ("cannot find mechanisms to negotiate"): ask it directly.
            if mechanism == .spnego {
                do {
                    _ = try GSSCredential.fromKeytab(
                        self.settings.keytab, principal: self.settings.principal, ccache: "MEMORY:sallyport-diagnosis-\(getpid())", mechanism: .kerberos
                    )
                } catch let reason as GSSError {
                    return .failure(DelegationError(reason, at: .tgt))
                } catch {}
            }
            return .failure(DelegationError(error, at: .tgt))
        } catch {
            return .failure(DelegationError(step: .tgt, failure: .other, detail: "\(error)"))
        }
    }

    /// Renews the connector's credentials that are due; the connector calls this every 30 s so the TGT never
    /// lapses between requests. Blocks: call off the event loops.
    public func renewDueCredentials() -> [DelegationError] {
        let due = self.own.withLock { own in own.filter { self.clock.now >= $0.value.refreshAt }.map(\.key) }
        var errors: [DelegationError] = []
        for mechanism in due {
            do { _ = try self.connectorCredential(mechanism) } catch { errors.append(error) }
        }
        return errors
    }

    /// When to replace a credential with `lifetime` left: `renewBefore` ahead, or at half its life when it is
    /// not even that long.
    static func refreshDelay(lifetime: Duration, renewBefore: Duration) -> Duration {
        lifetime > renewBefore ? lifetime - renewBefore : lifetime / 2
    }

    // MARK: Users' credentials

    /// The principal to impersonate for `user`, given the connector's realm.
    public static func principal(for user: DelegatedUser, realm: String) throws -> GSSName {
        switch user {
        case .account(let name):
            return try GSSName(principal: realm.isEmpty ? name : "\(name)@\(realm)")
        case .upn(let upn):
            let parts = upn.split(separator: "@", maxSplits: 1)
            if parts.count == 2, parts[1].uppercased() == realm.uppercased() {
                return try GSSName(principal: "\(parts[0])@\(realm)")
            }
            return try GSSName(enterprise: upn)
        }
    }

    /// A credential for `user` to `spn`, ready for tokens without further KDC traffic: from the cache, or
    /// obtained once however many requests ask at the same time. When a due replacement fails because no KDC
    /// answers, the old credential serves until it expires.
    public func credential(for user: DelegatedUser, spn: String, mechanism: GSSMechanism) async throws(DelegationError) -> GSSCredential {
        let key = Key(user: user, spn: spn, mechanism: mechanism)
        let now = self.clock.now
        enum Action {
            case ready(GSSCredential)
            case wait(Task<Cached, any Error>, fallback: GSSCredential?)
            case kdcDown(until: ContinuousClock.Instant)
        }
        let action = self.state.withLock { state -> Action in
            state.tick += 1
            let tick = state.tick
            state.noteUse(key, at: tick)
            if var entry = state.entries[key] {
                entry.lastUse = tick
                entry.usedAt = now
                defer { state.entries[key] = entry }
                if let credential = entry.credential, now < entry.refreshAt { return .ready(credential) }
                let fallback = now < entry.expiresAt ? entry.credential : nil
                if let flight = entry.flight { return .wait(flight, fallback: fallback) }
                if let until = state.kdcDownUntil, now < until {
                    if let fallback { return .ready(fallback) }
                    return .kdcDown(until: until)
                }
                let flight = self.startFlight(key)
                entry.flight = flight
                return .wait(flight, fallback: fallback)
            }
            if let until = state.kdcDownUntil, now < until { return .kdcDown(until: until) }
            let flight = self.startFlight(key)
            state.entries[key] = Entry(credential: nil, refreshAt: now, expiresAt: now, lastUse: tick, flight: flight, validatedAt: now, usedAt: now)
            Self.evict(&state, keeping: self.settings.maxEntries)
            return .wait(flight, fallback: nil)
        }
        switch action {
        case .ready: self.observer?(.cacheHit)
        case .wait, .kdcDown: self.observer?(.cacheMiss)
        }
        switch action {
        case .ready(let credential):
            return credential
        case .kdcDown(let until):
            let seconds = max(1, Int((until - now).components.seconds))
            throw DelegationError(
                step: .s4u2self, failure: .kdcUnreachable, detail: "no KDC answered moments ago; the next attempt is in \(seconds) s"
            )
        case .wait(let flight, let fallback):
            do {
                return try await flight.value.credential
            } catch let error as DelegationError {
                if let fallback, error.failure == .kdcUnreachable { return fallback }
                throw error
            } catch {
                throw DelegationError(step: .s4u2self, failure: .other, detail: "\(error)")
            }
        }
    }

    /// Drops the least recently used entries beyond `limit` (never one being obtained), in O(1) amortised.
    private static func evict(_ state: inout State, keeping limit: Int) {
        guard state.entries.count > limit else { return }
        var recency = state.recency
        state.recency = RecencyQueue()
        var busy: [(Key, UInt64)] = []
        while state.entries.count > limit {
            guard let oldest = recency.popOldest(where: { key, tick in state.entries[key]?.lastUse == tick }) else { break }
            if let entry = state.entries[oldest], entry.flight != nil {
                busy.append((oldest, entry.lastUse))
                continue
            }
            state.entries[oldest] = nil
        }
        // Entries being obtained stay, as recent as they were.
        for (key, tick) in busy { recency.touched(key, at: tick) }
        state.recency = recency
    }

    private func startFlight(_ key: Key) -> Task<Cached, any Error> {
        Task {
            let started = self.clock.now
            let result = await self.runBlocking { () -> Result<Cached, DelegationError> in
                do throws(DelegationError) {
                    return .success(try self.obtain(key))
                } catch {
                    // A TGT the KDC calls expired (clock jumps, suspended host): renew it once and try again.
                    guard error.detail.contains("expired"), error.step != .tgt else { return .failure(error) }
                    do throws(DelegationError) {
                        _ = try self.connectorCredential(key.mechanism, renew: true)
                        return .success(try self.obtain(key))
                    } catch {
                        return .failure(error)
                    }
                }
            }
            let now = self.clock.now
            if case .failure(let error) = result {
                self.observer?(.exchange(now - started, failure: error.failure))
            } else {
                self.observer?(.exchange(now - started, failure: nil))
            }
            self.state.withLock { state in
                switch result {
                case .success: state.kdcDownUntil = nil
                case .failure(let error) where error.failure == .kdcUnreachable: state.kdcDownUntil = now + self.settings.kdcRetryDelay
                case .failure: break
                }
                guard var entry = state.entries[key] else { return }
                entry.flight = nil
                switch result {
                case .success(let cached):
                    entry.credential = cached.credential
                    entry.validatedAt = now
                    entry.expiresAt = now + cached.lifetime
                    entry.refreshAt = now + Self.refreshDelay(lifetime: cached.lifetime, renewBefore: self.settings.renewBefore)
                    state.entries[key] = entry
                case .failure:
                    // Failures are not cached: the next request asks the KDC again (after a short pause when
                    // no KDC answered). A still-valid old credential stays for the fallback.
                    state.entries[key] = entry.credential == nil ? nil : entry
                }
            }
            return try result.get()
        }
    }

    // MARK: Revalidation and flushing

    /// What one revalidation round did.
    public struct Revalidation: Sendable, Equatable {
        /// Users the KDC vouched for again.
        public var confirmed: [String] = []
        /// Users the KDC refused (disabled, locked, deleted): their credentials are gone.
        public var revoked: [String] = []
        /// Credentials dropped because they went unused for the interval (the next use asks the KDC).
        public var expired = 0
        /// Users not checked because of a transient failure (no KDC); tried again next round.
        public var deferred: [String] = []
    }

    /// Keeps every cached credential within `revalidateInterval` of the KDC's word: users active since their
    /// last check get one S4U2Self each (off the request path); credentials unused that long are dropped; users
    /// the KDC now refuses lose theirs. Blocks on the KDC: call off the event loops.
    public func revalidate() -> Revalidation {
        let now = self.clock.now
        let interval = self.settings.revalidateInterval
        var outcome = Revalidation()
        let due: [DelegatedUser: GSSMechanism] = self.state.withLock { state in
            var users: [DelegatedUser: GSSMechanism] = [:]
            for (key, entry) in state.entries where entry.flight == nil && now - entry.validatedAt >= interval {
                if entry.usedAt > entry.validatedAt {
                    users[key.user] = key.mechanism
                } else {
                    state.entries[key] = nil
                    outcome.expired += 1
                }
            }
            return users
        }
        for (user, mechanism) in due.sorted(by: { $0.key.description < $1.key.description }) {
            do throws(DelegationError) {
                let (connector, realm) = try self.connectorCredential(mechanism)
                let principal: GSSName
                do { principal = try Self.principal(for: user, realm: realm) } catch { throw DelegationError(step: .s4u2self, failure: .other, detail: "\(error)") }
                _ = try DelegationError.during(.s4u2self) { try connector.impersonate(principal) }
                self.state.withLock { state in
                    for key in state.entries.keys where key.user == user { state.entries[key]?.validatedAt = now }
                }
                outcome.confirmed.append(user.description)
            } catch {
                switch error.failure {
                case .kdcUnreachable, .clockSkew, .connectorCredential, .other:
                    outcome.deferred.append(user.description)
                case .unknownUser, .userDisabled, .delegationRefused, .unknownSPN:
                    self.flush(user: user.description)
                    outcome.revoked.append(user.description)
                }
            }
        }
        return outcome
    }

    /// Drops the cached credentials of `user` (as the cache names it: the UPN or account, any case); nil drops
    /// all. Returns how many were dropped. The next request asks the KDC.
    @discardableResult
    public func flush(user: String?) -> Int {
        self.state.withLock { state in
            let keys = state.entries.keys.filter { key in user.map { key.user.description.lowercased() == $0.lowercased() } ?? true }
            for key in keys where state.entries[key]?.flight == nil { state.entries[key] = nil }
            return keys.count
        }
    }

    /// S4U2Self, then one context to the SPN (S4U2Proxy), whose token is dropped unsent. Blocks.
    private func obtain(_ key: Key) throws(DelegationError) -> Cached {
        let impersonated = try self.delegate(key.user, to: key.spn, mechanism: key.mechanism)
        return Cached(credential: impersonated, lifetime: .seconds(Int((try? impersonated.remainingLifetime()) ?? 0)))
    }

    /// The steps behind a user's credential, with nothing cached: the connector's credential, S4U2Self, then
    /// one context to the SPN (S4U2Proxy), whose token is dropped unsent. `progress` hears of each step that
    /// succeeded (`sallyport check kcd` prints them); the cache uses the same steps. Blocks on the KDC.
    public func delegate(
        _ user: DelegatedUser, to spn: String, mechanism: GSSMechanism, progress: (DelegationStep, GSSCredential) -> Void = { _, _ in }
    ) throws(DelegationError) -> GSSCredential {
        let (connector, realm) = try self.connectorCredential(mechanism)
        progress(.tgt, connector)
        let principal: GSSName
        let target: GSSName
        do {
            principal = try Self.principal(for: user, realm: realm)
            target = try GSSName(principal: spn)
        } catch let error as GSSError {
            throw DelegationError(step: .s4u2self, failure: .other, detail: error.description)
        } catch {
            throw DelegationError(step: .s4u2self, failure: .other, detail: "\(error)")
        }
        let impersonated = try DelegationError.during(.s4u2self) { try connector.impersonate(principal) }
        progress(.s4u2self, impersonated)
        do {
            try DelegationError.during(.s4u2proxy) { _ = try GSSInitiator().firstToken(credential: impersonated, target: target) }
        } catch {
            var refused = error
            if refused.failure == .delegationRefused { refused.evidenceForwardable = Self.evidence(in: impersonated)?.isForwardable }
            throw refused
        }
        progress(.s4u2proxy, impersonated)
        return impersonated
    }

    /// The S4U2Self ticket of an impersonated user's credential (its first ticket that is no TGT), if readable.
    public static func evidence(in impersonated: GSSCredential) -> GSSCredential.Ticket? {
        (try? impersonated.tickets())?.first { !$0.isTGT }
    }

    private func runBlocking<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            self.executor { continuation.resume(returning: work()) }
        }
    }
}
