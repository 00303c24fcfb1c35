/// The state database's schema, as an ordered list of migrations: entry `n` takes a database from
/// `PRAGMA user_version` n to n + 1, in its own transaction. Append new entries; never edit a released one,
/// since relays in the field have already applied it.
///
/// One string per statement: SQLiteNIO runs only the first statement of a string.
enum Migrations {
    static let all: [[String]] = [version1, version2, version3, version4]

    /// The schema version this build writes.
    static var latest: Int { all.count }

    /// Tokens, groups, connectors and their certificates. Dates are INTEGER milliseconds since 1970.
    static let version1 = [
        """
        CREATE TABLE groups (
            name TEXT PRIMARY KEY NOT NULL,
            created_at INTEGER NOT NULL
        ) STRICT
        """,
        """
        CREATE TABLE tokens (
            id TEXT PRIMARY KEY NOT NULL,
            secret_hash TEXT NOT NULL,
            group_name TEXT NOT NULL REFERENCES groups (name),
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            uses INTEGER NOT NULL CHECK (uses >= 0),
            uses_left INTEGER NOT NULL CHECK (uses_left >= 0)
        ) STRICT
        """,
        """
        CREATE TABLE connectors (
            id TEXT PRIMARY KEY NOT NULL,
            name TEXT NOT NULL,
            host TEXT NOT NULL,
            group_name TEXT NOT NULL REFERENCES groups (name),
            registered_at INTEGER NOT NULL,
            last_seen INTEGER,
            software TEXT NOT NULL
        ) STRICT
        """,
        "CREATE INDEX connectors_group_name ON connectors (group_name)",
        """
        CREATE TABLE certificates (
            fingerprint TEXT PRIMARY KEY NOT NULL,
            connector_id TEXT NOT NULL REFERENCES connectors (id) ON DELETE CASCADE,
            serial TEXT NOT NULL,
            issued_at INTEGER NOT NULL,
            not_after INTEGER NOT NULL,
            issued_by_relay INTEGER NOT NULL CHECK (issued_by_relay IN (0, 1))
        ) STRICT
        """,
        // Listing a connector's certificates, and the cascade when it is removed.
        "CREATE INDEX certificates_connector_id ON certificates (connector_id)",
    ]

    /// Membership's generation, bumped by every change to who is registered, in which group, with which
    /// certificate (as in ``PostgresMigrations``), so a relay can tell cheaply that it must look again.
    static let version2 = [
        """
        CREATE TABLE generations (
            name TEXT PRIMARY KEY NOT NULL,
            value INTEGER NOT NULL
        ) STRICT
        """,
        "INSERT INTO generations (name, value) VALUES ('membership', 0)",
    ] + membershipTriggers

    static let membershipTriggers = [
        ("connectors_inserted", "AFTER INSERT ON connectors"), ("connectors_deleted", "AFTER DELETE ON connectors"),
        ("connectors_moved", "AFTER UPDATE OF group_name ON connectors"), ("certificates_inserted", "AFTER INSERT ON certificates"),
        ("certificates_deleted", "AFTER DELETE ON certificates"),
    ].map { name, event in
        "CREATE TRIGGER \(name) \(event) FOR EACH ROW BEGIN UPDATE generations SET value = value + 1 WHERE name = 'membership'; END"
    }

    /// Relays sharing the store (one, for SQLite: the list connectors learn is the same code either way).
    static let version3 = [
        """
        CREATE TABLE relays (
            address TEXT PRIMARY KEY NOT NULL,
            server_name TEXT NOT NULL,
            software TEXT NOT NULL,
            apps_digest TEXT NOT NULL,
            started_at INTEGER NOT NULL,
            seen_at INTEGER NOT NULL
        ) STRICT
        """
    ]

    /// Single-use values (sign-in states) and secrets the relays share (the session key).
    static let version4 = [
        """
        CREATE TABLE used_once (
            key TEXT PRIMARY KEY NOT NULL,
            expires_at INTEGER NOT NULL
        ) STRICT
        """,
        "CREATE INDEX used_once_expires_at ON used_once (expires_at)",
        """
        CREATE TABLE secrets (
            name TEXT PRIMARY KEY NOT NULL,
            value BLOB NOT NULL
        ) STRICT
        """,
    ]
}
