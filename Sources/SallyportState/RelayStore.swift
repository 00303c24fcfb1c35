public import Foundation

/// The relay's durable state: registered connectors, their groups, registration tokens and the certificates
/// that identify connectors. The relay reaches SQL only through this protocol, so another database (PostgreSQL,
/// for several relays) is another implementation of it.
///
/// Every method is safe to call concurrently. Methods that change several rows do so atomically.
public protocol RelayStore: Sendable {
    // MARK: Registration tokens

    /// Stores a new token. Throws ``StoreError`` `.conflict` if its id exists.
    func addToken(_ token: TokenRecord) async throws(StoreError)
    /// Uses one of a token's uses, atomically: accepted only if `secretHash` matches, uses are left and
    /// `now` is before its expiry. Otherwise says why not (an unknown id and a wrong secret are both `.unknown`).
    func redeemToken(id: String, secretHash: String, now: Date) async throws(StoreError) -> TokenRedemption
    /// Every token, used up and expired ones included, oldest first.
    func tokens() async throws(StoreError) -> [TokenRecord]
    /// Deletes a token; false if there was none.
    func deleteToken(id: String) async throws(StoreError) -> Bool
    /// Deletes tokens that expired before `date`; returns how many.
    func deleteTokens(expiredBefore date: Date) async throws(StoreError) -> Int

    // MARK: Connectors

    /// Registers a connector with its first certificate, in one transaction. Throws `.conflict` if the id or
    /// the certificate fingerprint exists. Creates the group if it is new.
    func addConnector(_ connector: ConnectorRecord, certificate: CertificateRecord) async throws(StoreError)
    /// Every connector, by registration time.
    func connectors() async throws(StoreError) -> [ConnectorRecord]
    /// One connector.
    func connector(id: String) async throws(StoreError) -> ConnectorRecord?
    /// The connector a certificate identifies, with that certificate's record; nil if no registered connector
    /// holds it (never registered, or removed).
    func connector(certificateFingerprint: String) async throws(StoreError) -> (ConnectorRecord, CertificateRecord)?
    /// Moves a connector to another group (created if new); returns the updated record, nil if unknown.
    func moveConnector(id: String, to group: String) async throws(StoreError) -> ConnectorRecord?
    /// Removes a connector and every certificate of it; returns what was removed, nil if unknown.
    func removeConnector(id: String) async throws(StoreError) -> ConnectorRecord?
    /// Removes a connector only if it was last seen (or, never seen, registered) before `cutoff`, deciding in
    /// the same statement: a relay's upkeep must not remove a connector another relay saw a moment ago.
    func removeConnector(id: String, unseenSince cutoff: Date) async throws(StoreError) -> ConnectorRecord?
    /// Records that a connector was connected at `date`, with what it reported about itself.
    func recordSeen(id: String, at date: Date, software: String, host: String) async throws(StoreError)

    // MARK: Certificates

    /// Adds a certificate of a registered connector (a renewal). Throws `.notFound` if the connector is unknown,
    /// `.conflict` if the fingerprint exists.
    func addCertificate(_ certificate: CertificateRecord) async throws(StoreError)
    /// A connector's certificates, newest first.
    func certificates(connectorID: String) async throws(StoreError) -> [CertificateRecord]
    /// Deletes certificates that expired before `date`; returns how many.
    func deleteCertificates(expiredBefore date: Date) async throws(StoreError) -> Int

    // MARK: Groups

    /// Every group that was ever named by a token, a connector or ``addGroup(_:at:)``, by name.
    func groups() async throws(StoreError) -> [GroupRecord]
    /// Creates a group if it does not exist.
    func addGroup(_ name: String, at date: Date) async throws(StoreError)

    // MARK: Relays

    /// The time by the database's clock (PostgreSQL's; this host's for SQLite): relays date their announcements
    /// and judge others' by one clock, whatever their own clocks say.
    func databaseTime() async throws(StoreError) -> Date

    /// Records that a relay is up now (inserting or refreshing its row): relays sharing a store find each other
    /// here, and tell connectors where to dial.
    func announceRelay(_ relay: RelayRecord) async throws(StoreError)
    /// Relays seen at or after `date`, by address.
    func relays(seenSince date: Date) async throws(StoreError) -> [RelayRecord]
    /// Forgets a relay (it shut down); false if it was not there.
    func removeRelay(address: String) async throws(StoreError) -> Bool

    // MARK: Sign-in

    /// Records that a single-use value (an OIDC sign-in state, as a hash) was used, until `expiresAt`;
    /// false if it was recorded before and has not expired, whichever relay recorded it. Forgets expired ones.
    func useOnce(_ key: String, until expiresAt: Date, now: Date) async throws(StoreError) -> Bool
    /// The secret stored under `name`; stores `candidate` first if there is none, so that every relay gets the
    /// value the first one made.
    func secret(named name: String, orStore candidate: [UInt8]) async throws(StoreError) -> [UInt8]

    // MARK: Changes

    /// A number that grows with every change to membership (a connector registered, moved or removed, a
    /// certificate added or deleted), whichever relay made it: a relay that saw another number last time must
    /// read the connectors again.
    func membershipGeneration() async throws(StoreError) -> Int64
    /// Yields as soon as membership may have changed through another relay sharing the store, and when the
    /// store may have missed such news (after it lost its database connection). Never yields for a store one
    /// relay owns alone. Callers poll ``membershipGeneration()`` too: a yield is a hint, not a guarantee.
    func membershipChanges() -> AsyncStream<Void>

    /// Closes the store; nothing may be called after.
    func close() async
}

/// A registered connector. Its `id` is what its certificates name; its `group` is the relay's word, never the
/// connector's.
public struct ConnectorRecord: Sendable, Equatable, Codable {
    /// Unique and never reused, e.g. `c-5kq2x7m9d3`.
    public var id: String
    /// The name given at registration (defaults to the host name); need not be unique.
    public var name: String
    /// The host name the connector reported.
    public var host: String
    /// The connector group whose apps it serves.
    public var group: String
    /// When it registered.
    public var registeredAt: Date
    /// When it was last connected (nil: never since registration).
    public var lastSeen: Date?
    /// The software version it last reported.
    public var software: String

    /// Creates a record.
    public init(id: String, name: String, host: String, group: String, registeredAt: Date, lastSeen: Date? = nil, software: String = "") {
        self.id = id
        self.name = name
        self.host = host
        self.group = group
        self.registeredAt = registeredAt
        self.lastSeen = lastSeen
        self.software = software
    }
}

/// A relay sharing the store, as it last announced itself.
public struct RelayRecord: Sendable, Equatable, Codable {
    /// `host:port` connectors dial to reach this relay's tunnel listener; unique among relays.
    public var address: String
    /// The name its tunnel certificate carries, which connectors check.
    public var serverName: String
    /// The software version it runs.
    public var software: String
    /// A digest of the app configuration it serves: equal on relays that serve the same apps.
    public var appsDigest: String
    /// When this relay process started.
    public var startedAt: Date
    /// When it last announced itself.
    public var seenAt: Date

    /// Creates a record.
    public init(address: String, serverName: String, software: String, appsDigest: String, startedAt: Date, seenAt: Date) {
        self.address = address
        self.serverName = serverName
        self.software = software
        self.appsDigest = appsDigest
        self.startedAt = startedAt
        self.seenAt = seenAt
    }
}

/// A certificate that identifies a connector, issued by the relay or (bring your own PKI) added by an
/// administrator.
public struct CertificateRecord: Sendable, Equatable, Codable {
    /// Lowercase hex SHA-256 of the certificate's DER encoding: how the relay recognises it.
    public var fingerprint: String
    /// The connector it identifies.
    public var connectorID: String
    /// The serial number, hex, for logs.
    public var serial: String
    /// When it was issued (or added).
    public var issuedAt: Date
    /// When it expires.
    public var notAfter: Date
    /// True if this relay issued it; false for a certificate from the administrator's own CA.
    public var issuedByRelay: Bool

    /// Creates a record.
    public init(fingerprint: String, connectorID: String, serial: String, issuedAt: Date, notAfter: Date, issuedByRelay: Bool) {
        self.fingerprint = fingerprint
        self.connectorID = connectorID
        self.serial = serial
        self.issuedAt = issuedAt
        self.notAfter = notAfter
        self.issuedByRelay = issuedByRelay
    }
}

/// A registration token as stored: its secret only as a hash.
public struct TokenRecord: Sendable, Equatable, Codable {
    /// The public part of the token, unique.
    public var id: String
    /// Lowercase hex SHA-256 of the secret part.
    public var secretHash: String
    /// The group a connector registered with it joins.
    public var group: String
    /// When it was made.
    public var createdAt: Date
    /// After this it is refused.
    public var expiresAt: Date
    /// How many registrations it allows in all.
    public var uses: Int
    /// How many are left.
    public var usesLeft: Int

    /// Creates a record.
    public init(id: String, secretHash: String, group: String, createdAt: Date, expiresAt: Date, uses: Int, usesLeft: Int) {
        self.id = id
        self.secretHash = secretHash
        self.group = group
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.uses = uses
        self.usesLeft = usesLeft
    }
}

/// What redeeming a token gave.
public enum TokenRedemption: Sendable, Equatable {
    /// Accepted: register the connector in this group.
    case accepted(group: String)
    /// No token has this id and secret.
    case unknown
    /// The token exists but has no uses left.
    case used
    /// The token exists but expired.
    case expired
}

/// A connector group.
public struct GroupRecord: Sendable, Equatable, Codable {
    /// Its name, as apps' `connectorGroup` names it.
    public var name: String
    /// When it was first named.
    public var createdAt: Date

    /// Creates a record.
    public init(name: String, createdAt: Date) {
        self.name = name
        self.createdAt = createdAt
    }
}

/// A store that failed; `description` says what to do.
public struct StoreError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What kind of failure, so callers can react to some.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        /// The database cannot be opened, read or written (permissions, disk, corruption).
        public static let unavailable = Code(name: "unavailable")
        /// A row with this key exists.
        public static let conflict = Code(name: "conflict")
        /// The row something refers to does not exist.
        public static let notFound = Code(name: "notFound")
        public var description: String { self.name }
    }

    /// The kind of failure.
    public var code: Code
    /// What failed and what to do, for the operator.
    public var description: String

    /// Creates an error.
    public init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }
}
