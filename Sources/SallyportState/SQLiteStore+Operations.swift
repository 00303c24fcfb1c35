public import Foundation
import NIOCore
import SQLiteNIO

private let tokenColumns = "id, secret_hash, group_name, created_at, expires_at, uses, uses_left"
private let connectorColumns = "id, name, host, group_name, registered_at, last_seen, software"
private let certificateColumns = "fingerprint, connector_id, serial, issued_at, not_after, issued_by_relay"
private let relayColumns = "address, server_name, software, apps_digest, started_at, seen_at"

extension SQLiteStore {
    // MARK: Registration tokens

    /// Stores a new token and creates its group if new. Throws `.conflict` if its id exists.
    public func addToken(_ token: TokenRecord) async throws(StoreError) {
        try await self.serialized { () async throws(StoreError) in
            try await self.transaction { () async throws(StoreError) in
                if try await self.exists("SELECT 1 FROM tokens WHERE id = ?", [.text(token.id)]) {
                    throw StoreError(.conflict, "a registration token with id \(token.id) exists")
                }
                try await self.insertGroup(token.group, at: token.createdAt)
                try await self.execute(
                    "INSERT INTO tokens (\(tokenColumns)) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        .text(token.id), .text(token.secretHash), .text(token.group), milliseconds(token.createdAt),
                        milliseconds(token.expiresAt), .integer(token.uses), .integer(token.usesLeft),
                    ]
                )
            }
        }
    }

    /// Uses one of a token's uses in a single statement, so concurrent redemptions never overspend it. A token
    /// both used up and expired is `.used`.
    public func redeemToken(id: String, secretHash: String, now: Date) async throws(StoreError) -> TokenRedemption {
        try await self.serialized { () async throws(StoreError) -> TokenRedemption in
            let accepted = try await self.execute(
                """
                UPDATE tokens SET uses_left = uses_left - 1
                WHERE id = ? AND secret_hash = ? AND uses_left > 0 AND expires_at > ?
                RETURNING group_name
                """,
                [.text(id), .text(secretHash), milliseconds(now)]
            )
            if let row = accepted.first { return .accepted(group: try self.reader(row).text("group_name")) }
            let rows = try await self.execute(
                "SELECT uses_left FROM tokens WHERE id = ? AND secret_hash = ?",
                [.text(id), .text(secretHash)]
            )
            guard let row = rows.first else { return .unknown }
            return try self.reader(row).integer("uses_left") <= 0 ? .used : .expired
        }
    }

    /// Every token, oldest first.
    public func tokens() async throws(StoreError) -> [TokenRecord] {
        try await self.serialized { () async throws(StoreError) -> [TokenRecord] in
            var tokens: [TokenRecord] = []
            for row in try await self.execute("SELECT \(tokenColumns) FROM tokens ORDER BY created_at, id") {
                tokens.append(try self.token(row))
            }
            return tokens
        }
    }

    /// Deletes a token; false if there was none.
    public func deleteToken(id: String) async throws(StoreError) -> Bool {
        try await self.serialized { () async throws(StoreError) -> Bool in
            try await !self.execute("DELETE FROM tokens WHERE id = ? RETURNING id", [.text(id)]).isEmpty
        }
    }

    /// Deletes tokens that expired before `date`; returns how many.
    public func deleteTokens(expiredBefore date: Date) async throws(StoreError) -> Int {
        try await self.serialized { () async throws(StoreError) -> Int in
            try await self.execute("DELETE FROM tokens WHERE expires_at < ? RETURNING id", [milliseconds(date)]).count
        }
    }

    // MARK: Connectors

    /// Registers a connector with its first certificate and creates its group if new, in one transaction.
    /// Throws `.conflict` if the id or the fingerprint exists.
    public func addConnector(_ connector: ConnectorRecord, certificate: CertificateRecord) async throws(StoreError) {
        try await self.serialized { () async throws(StoreError) in
            try await self.transaction { () async throws(StoreError) in
                if try await self.exists("SELECT 1 FROM connectors WHERE id = ?", [.text(connector.id)]) {
                    throw StoreError(.conflict, "a connector with id \(connector.id) is already registered")
                }
                try await self.insertGroup(connector.group, at: connector.registeredAt)
                try await self.execute(
                    "INSERT INTO connectors (\(connectorColumns)) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        .text(connector.id), .text(connector.name), .text(connector.host), .text(connector.group),
                        milliseconds(connector.registeredAt), connector.lastSeen.map(milliseconds) ?? .null,
                        .text(connector.software),
                    ]
                )
                try await self.insertCertificate(certificate)
            }
        }
    }

    /// Every connector, by registration time.
    public func connectors() async throws(StoreError) -> [ConnectorRecord] {
        try await self.serialized { () async throws(StoreError) -> [ConnectorRecord] in
            var connectors: [ConnectorRecord] = []
            for row in try await self.execute("SELECT \(connectorColumns) FROM connectors ORDER BY registered_at, id") {
                connectors.append(try self.connector(row))
            }
            return connectors
        }
    }

    /// One connector.
    public func connector(id: String) async throws(StoreError) -> ConnectorRecord? {
        try await self.serialized { () async throws(StoreError) -> ConnectorRecord? in
            try await self.selectConnector(id: id)
        }
    }

    /// The connector a certificate identifies, with that certificate's record; nil if none holds it.
    public func connector(certificateFingerprint: String) async throws(StoreError) -> (ConnectorRecord, CertificateRecord)? {
        try await self.serialized { () async throws(StoreError) -> (ConnectorRecord, CertificateRecord)? in
            // No column name is in both tables, so the unqualified names read back unambiguously.
            let rows = try await self.execute(
                """
                SELECT c.id, c.name, c.host, c.group_name, c.registered_at, c.last_seen, c.software,
                       k.fingerprint, k.connector_id, k.serial, k.issued_at, k.not_after, k.issued_by_relay
                FROM certificates k JOIN connectors c ON c.id = k.connector_id
                WHERE k.fingerprint = ?
                """,
                [.text(certificateFingerprint)]
            )
            guard let row = rows.first else { return nil }
            return (try self.connector(row), try self.certificate(row))
        }
    }

    /// Moves a connector to another group, created (dated now) if new; nil if the connector is unknown.
    public func moveConnector(id: String, to group: String) async throws(StoreError) -> ConnectorRecord? {
        try await self.serialized { () async throws(StoreError) -> ConnectorRecord? in
            try await self.transaction { () async throws(StoreError) -> ConnectorRecord? in
                guard try await self.exists("SELECT 1 FROM connectors WHERE id = ?", [.text(id)]) else { return nil }
                try await self.insertGroup(group, at: Date())
                let rows = try await self.execute(
                    "UPDATE connectors SET group_name = ? WHERE id = ? RETURNING \(connectorColumns)",
                    [.text(group), .text(id)]
                )
                return try rows.first.map { (row) throws(StoreError) in try self.connector(row) }
            }
        }
    }

    /// Removes a connector and its certificates in one transaction; nil if unknown. Its group stays.
    public func removeConnector(id: String) async throws(StoreError) -> ConnectorRecord? {
        try await self.serialized { () async throws(StoreError) -> ConnectorRecord? in
            try await self.transaction { () async throws(StoreError) -> ConnectorRecord? in
                // Explicit rather than relying on ON DELETE CASCADE alone, which a connection without
                // foreign_keys = ON would skip.
                try await self.execute("DELETE FROM certificates WHERE connector_id = ?", [.text(id)])
                let rows = try await self.execute("DELETE FROM connectors WHERE id = ? RETURNING \(connectorColumns)", [.text(id)])
                return try rows.first.map { (row) throws(StoreError) in try self.connector(row) }
            }
        }
    }

    /// Removes a connector unseen since `cutoff`, in one transaction with its certificates; nil if it is unknown
    /// or was seen since.
    public func removeConnector(id: String, unseenSince cutoff: Date) async throws(StoreError) -> ConnectorRecord? {
        try await self.serialized { () async throws(StoreError) -> ConnectorRecord? in
            try await self.transaction { () async throws(StoreError) -> ConnectorRecord? in
                let rows = try await self.execute(
                    "DELETE FROM connectors WHERE id = ? AND COALESCE(last_seen, registered_at) < ? RETURNING \(connectorColumns)",
                    [.text(id), milliseconds(cutoff)]
                )
                guard let row = rows.first else { return nil }
                try await self.execute("DELETE FROM certificates WHERE connector_id = ?", [.text(id)])
                return try self.connector(row)
            }
        }
    }

    /// Records that a connector was connected at `date`; does nothing if the connector is unknown (it may have
    /// been removed while connected).
    public func recordSeen(id: String, at date: Date, software: String, host: String) async throws(StoreError) {
        try await self.serialized { () async throws(StoreError) in
            _ = try await self.execute(
                "UPDATE connectors SET last_seen = ?, software = ?, host = ? WHERE id = ?",
                [milliseconds(date), .text(software), .text(host), .text(id)]
            )
        }
    }

    // MARK: Certificates

    /// Adds a certificate of a registered connector. Throws `.notFound` if the connector is unknown, `.conflict`
    /// if the fingerprint exists.
    public func addCertificate(_ certificate: CertificateRecord) async throws(StoreError) {
        try await self.serialized { () async throws(StoreError) in
            try await self.transaction { () async throws(StoreError) in
                guard try await self.exists("SELECT 1 FROM connectors WHERE id = ?", [.text(certificate.connectorID)]) else {
                    throw StoreError(.notFound, "no connector with id \(certificate.connectorID) is registered")
                }
                try await self.insertCertificate(certificate)
            }
        }
    }

    /// A connector's certificates, newest first.
    public func certificates(connectorID: String) async throws(StoreError) -> [CertificateRecord] {
        try await self.serialized { () async throws(StoreError) -> [CertificateRecord] in
            var certificates: [CertificateRecord] = []
            let rows = try await self.execute(
                "SELECT \(certificateColumns) FROM certificates WHERE connector_id = ? ORDER BY issued_at DESC, fingerprint",
                [.text(connectorID)]
            )
            for row in rows { certificates.append(try self.certificate(row)) }
            return certificates
        }
    }

    /// Deletes certificates that expired before `date`; returns how many.
    public func deleteCertificates(expiredBefore date: Date) async throws(StoreError) -> Int {
        try await self.serialized { () async throws(StoreError) -> Int in
            try await self.execute("DELETE FROM certificates WHERE not_after < ? RETURNING fingerprint", [milliseconds(date)]).count
        }
    }

    // MARK: Groups

    /// Every group ever named, by name.
    public func groups() async throws(StoreError) -> [GroupRecord] {
        try await self.serialized { () async throws(StoreError) -> [GroupRecord] in
            var groups: [GroupRecord] = []
            for row in try await self.execute("SELECT name, created_at FROM groups ORDER BY name") {
                let reader = self.reader(row)
                groups.append(GroupRecord(name: try reader.text("name"), createdAt: try reader.date("created_at")))
            }
            return groups
        }
    }

    /// Creates a group if it does not exist.
    public func addGroup(_ name: String, at date: Date) async throws(StoreError) {
        try await self.serialized { () async throws(StoreError) in
            try await self.insertGroup(name, at: date)
        }
    }

    // MARK: Relays

    /// This host's clock: one relay owns the file.
    public func databaseTime() async throws(StoreError) -> Date { Date() }

    public func announceRelay(_ relay: RelayRecord) async throws(StoreError) {
        try await self.serialized { () async throws(StoreError) in
            _ = try await self.execute(
                """
                INSERT INTO relays (\(relayColumns)) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (address) DO UPDATE SET server_name = excluded.server_name, software = excluded.software,
                    apps_digest = excluded.apps_digest, started_at = excluded.started_at, seen_at = excluded.seen_at
                """,
                [
                    .text(relay.address), .text(relay.serverName), .text(relay.software), .text(relay.appsDigest), milliseconds(relay.startedAt),
                    milliseconds(relay.seenAt),
                ]
            )
        }
    }

    public func relays(seenSince date: Date) async throws(StoreError) -> [RelayRecord] {
        try await self.serialized { () async throws(StoreError) -> [RelayRecord] in
            var relays: [RelayRecord] = []
            for row in try await self.execute("SELECT \(relayColumns) FROM relays WHERE seen_at >= ? ORDER BY address", [milliseconds(date)]) {
                let r = self.reader(row)
                relays.append(
                    RelayRecord(
                        address: try r.text("address"), serverName: try r.text("server_name"), software: try r.text("software"),
                        appsDigest: try r.text("apps_digest"), startedAt: try r.date("started_at"), seenAt: try r.date("seen_at")
                    )
                )
            }
            return relays
        }
    }

    public func removeRelay(address: String) async throws(StoreError) -> Bool {
        try await self.serialized { () async throws(StoreError) -> Bool in
            try await !self.execute("DELETE FROM relays WHERE address = ? RETURNING address", [.text(address)]).isEmpty
        }
    }

    // MARK: Sign-in

    public func useOnce(_ key: String, until expiresAt: Date, now: Date) async throws(StoreError) -> Bool {
        try await self.serialized { () async throws(StoreError) -> Bool in
            try await self.execute("DELETE FROM used_once WHERE expires_at <= ?", [milliseconds(now)])
            return try await !self.execute(
                "INSERT INTO used_once (key, expires_at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING RETURNING key",
                [.text(key), milliseconds(expiresAt)]
            ).isEmpty
        }
    }

    public func secret(named name: String, orStore candidate: [UInt8]) async throws(StoreError) -> [UInt8] {
        try await self.serialized { () async throws(StoreError) -> [UInt8] in
            try await self.execute(
                "INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", [.text(name), .blob(ByteBuffer(bytes: candidate))]
            )
            guard case .blob(let value) = try await self.execute("SELECT value FROM secrets WHERE name = ?", [.text(name)]).first?.column("value") else {
                throw .notReadable(self.path, "the secret \(name) is missing right after it was stored")
            }
            return Array(value.readableBytesView)
        }
    }

    // MARK: Changes

    /// Membership's generation (schema 2's triggers bump it).
    public func membershipGeneration() async throws(StoreError) -> Int64 {
        try await self.serialized { () async throws(StoreError) -> Int64 in
            let rows = try await self.execute("SELECT value FROM generations WHERE name = 'membership'")
            guard let row = rows.first else { throw .notReadable(self.path, "the membership generation is missing") }
            return Int64(try self.reader(row).integer("value"))
        }
    }

    /// Never yields: no other relay writes this file.
    public func membershipChanges() -> AsyncStream<Void> {
        AsyncStream { _ in }
    }

    // MARK: Rows

    private func insertGroup(_ name: String, at date: Date) async throws(StoreError) {
        try await self.execute(
            "INSERT INTO groups (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", [.text(name), milliseconds(date)]
        )
    }

    private func insertCertificate(_ certificate: CertificateRecord) async throws(StoreError) {
        if try await self.exists("SELECT 1 FROM certificates WHERE fingerprint = ?", [.text(certificate.fingerprint)]) {
            throw StoreError(.conflict, "a certificate with fingerprint \(certificate.fingerprint) is already registered")
        }
        try await self.execute(
            "INSERT INTO certificates (\(certificateColumns)) VALUES (?, ?, ?, ?, ?, ?)",
            [
                .text(certificate.fingerprint), .text(certificate.connectorID), .text(certificate.serial),
                milliseconds(certificate.issuedAt), milliseconds(certificate.notAfter), .integer(certificate.issuedByRelay ? 1 : 0),
            ]
        )
    }

    private func selectConnector(id: String) async throws(StoreError) -> ConnectorRecord? {
        let rows = try await self.execute("SELECT \(connectorColumns) FROM connectors WHERE id = ?", [.text(id)])
        return try rows.first.map { (row) throws(StoreError) in try self.connector(row) }
    }

    private func token(_ row: SQLiteRow) throws(StoreError) -> TokenRecord {
        let r = self.reader(row)
        return TokenRecord(
            id: try r.text("id"), secretHash: try r.text("secret_hash"), group: try r.text("group_name"),
            createdAt: try r.date("created_at"), expiresAt: try r.date("expires_at"), uses: try r.integer("uses"),
            usesLeft: try r.integer("uses_left")
        )
    }

    private func connector(_ row: SQLiteRow) throws(StoreError) -> ConnectorRecord {
        let r = self.reader(row)
        return ConnectorRecord(
            id: try r.text("id"), name: try r.text("name"), host: try r.text("host"), group: try r.text("group_name"),
            registeredAt: try r.date("registered_at"), lastSeen: try r.optionalDate("last_seen"), software: try r.text("software")
        )
    }

    private func certificate(_ row: SQLiteRow) throws(StoreError) -> CertificateRecord {
        let r = self.reader(row)
        return CertificateRecord(
            fingerprint: try r.text("fingerprint"), connectorID: try r.text("connector_id"), serial: try r.text("serial"),
            issuedAt: try r.date("issued_at"), notAfter: try r.date("not_after"), issuedByRelay: try r.bool("issued_by_relay")
        )
    }
}
