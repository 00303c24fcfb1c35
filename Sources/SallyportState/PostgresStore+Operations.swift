public import Foundation
import NIOCore
import PostgresNIO

private let tokenColumns = "id, secret_hash, group_name, created_at, expires_at, uses, uses_left"
private let connectorColumns = "id, name, host, group_name, registered_at, last_seen, software"
private let certificateColumns = "fingerprint, connector_id, serial, issued_at, not_after, issued_by_relay"
private let relayColumns = "address, server_name, software, apps_digest, started_at, seen_at"

/// Statements shared by several operations.
private enum SQL {
    static func insertGroup(_ name: String, at date: Date) -> PostgresQuery {
        "INSERT INTO groups (name, created_at) VALUES (\(name), \(epochMilliseconds(date))) ON CONFLICT (name) DO NOTHING"
    }

    static func insertCertificate(_ c: CertificateRecord) -> PostgresQuery {
        """
        INSERT INTO certificates (\(unescaped: certificateColumns)) VALUES (\(c.fingerprint), \(c.connectorID), \(c.serial),
            \(epochMilliseconds(c.issuedAt)), \(epochMilliseconds(c.notAfter)), \(c.issuedByRelay))
        """
    }
}

extension PostgresStore {
    // MARK: Registration tokens

    public func addToken(_ token: TokenRecord) async throws(StoreError) {
        try await self.transaction(conflicts: ["tokens_pkey": "a registration token with id \(token.id) exists"]) { connection in
            try await connection.query(SQL.insertGroup(token.group, at: token.createdAt), logger: self.logger)
            try await connection.query(
                """
                INSERT INTO tokens (\(unescaped: tokenColumns)) VALUES (\(token.id), \(token.secretHash), \(token.group),
                    \(epochMilliseconds(token.createdAt)), \(epochMilliseconds(token.expiresAt)), \(Int64(token.uses)), \(Int64(token.usesLeft)))
                """,
                logger: self.logger
            )
        }
    }

    /// One UPDATE spends a use, so redemptions on any number of relays never overspend a token.
    public func redeemToken(id: String, secretHash: String, now: Date) async throws(StoreError) -> TokenRedemption {
        try await self.run { connection in
            let accepted = try await connection.query(
                """
                UPDATE tokens SET uses_left = uses_left - 1
                WHERE id = \(id) AND secret_hash = \(secretHash) AND uses_left > 0 AND expires_at > \(epochMilliseconds(now))
                RETURNING group_name
                """,
                logger: self.logger
            )
            for try await group in accepted.decode(String.self) { return .accepted(group: group) }
            let rows = try await connection.query(
                "SELECT uses_left FROM tokens WHERE id = \(id) AND secret_hash = \(secretHash)", logger: self.logger
            )
            for try await left in rows.decode(Int64.self) { return left <= 0 ? .used : .expired }
            return .unknown
        }
    }

    public func tokens() async throws(StoreError) -> [TokenRecord] {
        try await self.run { connection in
            try await connection.query("SELECT \(unescaped: tokenColumns) FROM tokens ORDER BY created_at, id", logger: self.logger)
                .collect().map(Rows.token)
        }
    }

    public func deleteToken(id: String) async throws(StoreError) -> Bool {
        try await self.run { connection in
            try await !connection.query("DELETE FROM tokens WHERE id = \(id) RETURNING id", logger: self.logger).collect().isEmpty
        }
    }

    public func deleteTokens(expiredBefore date: Date) async throws(StoreError) -> Int {
        try await self.run { connection in
            try await connection.query(
                "DELETE FROM tokens WHERE expires_at < \(epochMilliseconds(date)) RETURNING id", logger: self.logger
            ).collect().count
        }
    }

    // MARK: Connectors

    public func addConnector(_ connector: ConnectorRecord, certificate: CertificateRecord) async throws(StoreError) {
        let conflicts = [
            "connectors_pkey": "a connector with id \(connector.id) is already registered",
            "certificates_pkey": "a certificate with fingerprint \(certificate.fingerprint) is already registered",
        ]
        try await self.transaction(conflicts: conflicts) { connection in
            try await connection.query(SQL.insertGroup(connector.group, at: connector.registeredAt), logger: self.logger)
            try await connection.query(
                """
                INSERT INTO connectors (\(unescaped: connectorColumns)) VALUES (\(connector.id), \(connector.name), \(connector.host),
                    \(connector.group), \(epochMilliseconds(connector.registeredAt)), \(connector.lastSeen.map(epochMilliseconds)),
                    \(connector.software))
                """,
                logger: self.logger
            )
            try await connection.query(SQL.insertCertificate(certificate), logger: self.logger)
        }
    }

    public func connectors() async throws(StoreError) -> [ConnectorRecord] {
        try await self.run { connection in
            try await connection.query("SELECT \(unescaped: connectorColumns) FROM connectors ORDER BY registered_at, id", logger: self.logger)
                .collect().map(Rows.connector)
        }
    }

    public func connector(id: String) async throws(StoreError) -> ConnectorRecord? {
        try await self.run { connection in
            try await connection.query("SELECT \(unescaped: connectorColumns) FROM connectors WHERE id = \(id)", logger: self.logger)
                .collect().first.map(Rows.connector)
        }
    }

    public func connector(certificateFingerprint: String) async throws(StoreError) -> (ConnectorRecord, CertificateRecord)? {
        let found = try await self.run { connection -> [PostgresRow] in
            try await connection.query(
                """
                SELECT c.id, c.name, c.host, c.group_name, c.registered_at, c.last_seen, c.software,
                       k.fingerprint, k.connector_id, k.serial, k.issued_at, k.not_after, k.issued_by_relay
                FROM certificates k JOIN connectors c ON c.id = k.connector_id
                WHERE k.fingerprint = \(certificateFingerprint)
                """,
                logger: self.logger
            ).collect()
        }
        guard let row = found.first else { return nil }
        do {
            return (try Rows.connector(row), try Rows.certificate(row))
        } catch {
            throw StoreError.postgres(error, store: self.name)
        }
    }

    public func moveConnector(id: String, to group: String) async throws(StoreError) -> ConnectorRecord? {
        try await self.transaction { connection in
            // The row lock keeps a concurrent removal from slipping between the check and the move.
            let exists = try await connection.query("SELECT 1 FROM connectors WHERE id = \(id) FOR UPDATE", logger: self.logger).collect()
            guard !exists.isEmpty else { return nil }
            try await connection.query(SQL.insertGroup(group, at: Date()), logger: self.logger)
            return try await connection.query(
                "UPDATE connectors SET group_name = \(group) WHERE id = \(id) RETURNING \(unescaped: connectorColumns)", logger: self.logger
            ).collect().first.map(Rows.connector)
        }
    }

    /// Certificates go with the connector (ON DELETE CASCADE, always enforced in PostgreSQL).
    public func removeConnector(id: String) async throws(StoreError) -> ConnectorRecord? {
        try await self.run { connection in
            try await connection.query("DELETE FROM connectors WHERE id = \(id) RETURNING \(unescaped: connectorColumns)", logger: self.logger)
                .collect().first.map(Rows.connector)
        }
    }

    public func removeConnector(id: String, unseenSince cutoff: Date) async throws(StoreError) -> ConnectorRecord? {
        try await self.run { connection in
            try await connection.query(
                """
                DELETE FROM connectors WHERE id = \(id) AND COALESCE(last_seen, registered_at) < \(epochMilliseconds(cutoff))
                RETURNING \(unescaped: connectorColumns)
                """,
                logger: self.logger
            ).collect().first.map(Rows.connector)
        }
    }

    public func recordSeen(id: String, at date: Date, software: String, host: String) async throws(StoreError) {
        try await self.run { connection in
            try await connection.query(
                "UPDATE connectors SET last_seen = \(epochMilliseconds(date)), software = \(software), host = \(host) WHERE id = \(id)",
                logger: self.logger
            )
            return ()
        }
    }

    // MARK: Certificates

    public func addCertificate(_ certificate: CertificateRecord) async throws(StoreError) {
        let conflicts = [
            "certificates_pkey": "a certificate with fingerprint \(certificate.fingerprint) is already registered",
            "certificates_connector_id_fkey": "no connector with id \(certificate.connectorID) is registered",
        ]
        try await self.run(conflicts: conflicts) { connection in
            try await connection.query(SQL.insertCertificate(certificate), logger: self.logger)
            return ()
        }
    }

    public func certificates(connectorID: String) async throws(StoreError) -> [CertificateRecord] {
        try await self.run { connection in
            try await connection.query(
                "SELECT \(unescaped: certificateColumns) FROM certificates WHERE connector_id = \(connectorID) ORDER BY issued_at DESC, fingerprint",
                logger: self.logger
            ).collect().map(Rows.certificate)
        }
    }

    public func deleteCertificates(expiredBefore date: Date) async throws(StoreError) -> Int {
        try await self.run { connection in
            try await connection.query(
                "DELETE FROM certificates WHERE not_after < \(epochMilliseconds(date)) RETURNING fingerprint", logger: self.logger
            ).collect().count
        }
    }

    // MARK: Groups

    public func groups() async throws(StoreError) -> [GroupRecord] {
        try await self.run { connection in
            try await connection.query("SELECT name, created_at FROM groups ORDER BY name", logger: self.logger).collect().map { row in
                let (name, created) = try row.decode((String, Int64).self)
                return GroupRecord(name: name, createdAt: date(milliseconds: created))
            }
        }
    }

    public func addGroup(_ name: String, at date: Date) async throws(StoreError) {
        try await self.run { connection in
            try await connection.query(SQL.insertGroup(name, at: date), logger: self.logger)
            return ()
        }
    }

    // MARK: Relays

    /// PostgreSQL's clock (`clock_timestamp()`), which every relay sharing the database reads alike.
    public func databaseTime() async throws(StoreError) -> Date {
        try await self.run { connection in
            for try await milliseconds in try await connection.query(
                "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint", logger: self.logger
            ).decode(Int64.self) {
                return date(milliseconds: milliseconds)
            }
            throw StoreError(.unavailable, "PostgreSQL gave no time")
        }
    }

    public func announceRelay(_ relay: RelayRecord) async throws(StoreError) {
        try await self.run { connection in
            try await connection.query(
                """
                INSERT INTO relays (\(unescaped: relayColumns)) VALUES (\(relay.address), \(relay.serverName), \(relay.software),
                    \(relay.appsDigest), \(epochMilliseconds(relay.startedAt)), \(epochMilliseconds(relay.seenAt)))
                ON CONFLICT (address) DO UPDATE SET server_name = excluded.server_name, software = excluded.software,
                    apps_digest = excluded.apps_digest, started_at = excluded.started_at, seen_at = excluded.seen_at
                """,
                logger: self.logger
            )
            return ()
        }
    }

    public func relays(seenSince date: Date) async throws(StoreError) -> [RelayRecord] {
        try await self.run { connection in
            try await connection.query(
                "SELECT \(unescaped: relayColumns) FROM relays WHERE seen_at >= \(epochMilliseconds(date)) ORDER BY address", logger: self.logger
            ).collect().map(Rows.relay)
        }
    }

    public func removeRelay(address: String) async throws(StoreError) -> Bool {
        try await self.run { connection in
            try await !connection.query("DELETE FROM relays WHERE address = \(address) RETURNING address", logger: self.logger).collect().isEmpty
        }
    }

    // MARK: Sign-in

    public func useOnce(_ key: String, until expiresAt: Date, now: Date) async throws(StoreError) -> Bool {
        try await self.run { connection in
            try await connection.query("DELETE FROM used_once WHERE expires_at <= \(epochMilliseconds(now))", logger: self.logger)
            return try await !connection.query(
                "INSERT INTO used_once (key, expires_at) VALUES (\(key), \(epochMilliseconds(expiresAt))) ON CONFLICT (key) DO NOTHING RETURNING key",
                logger: self.logger
            ).collect().isEmpty
        }
    }

    public func secret(named name: String, orStore candidate: [UInt8]) async throws(StoreError) -> [UInt8] {
        try await self.run { connection in
            try await connection.query(
                "INSERT INTO secrets (name, value) VALUES (\(name), \(ByteBuffer(bytes: candidate))) ON CONFLICT (name) DO NOTHING", logger: self.logger
            )
            for try await value in try await connection.query("SELECT value FROM secrets WHERE name = \(name)", logger: self.logger).decode(ByteBuffer.self) {
                return Array(value.readableBytesView)
            }
            throw StoreError(.unavailable, "the secret \(name) is missing from the database right after it was stored")
        }
    }

    // MARK: Changes

    public func membershipGeneration() async throws(StoreError) -> Int64 {
        try await self.run { connection in
            for try await value in try await connection.query(
                "SELECT value FROM generations WHERE name = 'membership'", logger: self.logger
            ).decode(Int64.self) {
                return value
            }
            throw StoreError(.unavailable, "the membership generation is missing from the database: was its schema changed by hand?")
        }
    }
}

/// Records from rows, by column name (the join in `connector(certificateFingerprint:)` has both kinds).
private enum Rows {
    static func token(_ row: PostgresRow) throws -> TokenRecord {
        let r = row.makeRandomAccess()
        return TokenRecord(
            id: try r["id"].decode(String.self), secretHash: try r["secret_hash"].decode(String.self),
            group: try r["group_name"].decode(String.self), createdAt: date(milliseconds: try r["created_at"].decode(Int64.self)),
            expiresAt: date(milliseconds: try r["expires_at"].decode(Int64.self)), uses: Int(try r["uses"].decode(Int64.self)),
            usesLeft: Int(try r["uses_left"].decode(Int64.self))
        )
    }

    static func connector(_ row: PostgresRow) throws -> ConnectorRecord {
        let r = row.makeRandomAccess()
        return ConnectorRecord(
            id: try r["id"].decode(String.self), name: try r["name"].decode(String.self), host: try r["host"].decode(String.self),
            group: try r["group_name"].decode(String.self), registeredAt: date(milliseconds: try r["registered_at"].decode(Int64.self)),
            lastSeen: try r["last_seen"].decode(Int64?.self).map { date(milliseconds: $0) }, software: try r["software"].decode(String.self)
        )
    }

    static func certificate(_ row: PostgresRow) throws -> CertificateRecord {
        let r = row.makeRandomAccess()
        return CertificateRecord(
            fingerprint: try r["fingerprint"].decode(String.self), connectorID: try r["connector_id"].decode(String.self),
            serial: try r["serial"].decode(String.self), issuedAt: date(milliseconds: try r["issued_at"].decode(Int64.self)),
            notAfter: date(milliseconds: try r["not_after"].decode(Int64.self)), issuedByRelay: try r["issued_by_relay"].decode(Bool.self)
        )
    }

    static func relay(_ row: PostgresRow) throws -> RelayRecord {
        let r = row.makeRandomAccess()
        return RelayRecord(
            address: try r["address"].decode(String.self), serverName: try r["server_name"].decode(String.self),
            software: try r["software"].decode(String.self), appsDigest: try r["apps_digest"].decode(String.self),
            startedAt: date(milliseconds: try r["started_at"].decode(Int64.self)), seenAt: date(milliseconds: try r["seen_at"].decode(Int64.self))
        )
    }
}
