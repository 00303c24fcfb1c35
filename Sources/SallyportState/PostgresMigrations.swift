/// The PostgreSQL schema, as an ordered list of migrations: entry `n` takes a database from schema version n to
/// n + 1. Every pending migration runs in one transaction that first takes an advisory lock, so relays starting
/// together migrate once, one after the other, and a failed migration leaves nothing half done. Append new
/// entries; never edit a released one.
///
/// The same tables as ``Migrations`` (SQLite), in PostgreSQL's words: dates are BIGINT milliseconds since 1970,
/// so that both stores give back exactly what they were given.
enum PostgresMigrations {
    static let all: [[String]] = [version1, version2, version3]

    /// The schema version this build writes.
    static var latest: Int { all.count }

    /// Any number that no other application's advisory locks use: "SALLYPRT" in ASCII.
    static let lockKey: Int64 = 0x5341_4C4C_5950_5254

    /// The NOTIFY channel of membership changes.
    static let membershipChannel = "sallyport_membership"

    /// The table that records the schema version; created before the first migration.
    static let versionTable = """
        CREATE TABLE IF NOT EXISTS sallyport_schema (
            singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
            version BIGINT NOT NULL
        )
        """

    static let version1 = [
        """
        CREATE TABLE groups (
            name TEXT PRIMARY KEY,
            created_at BIGINT NOT NULL
        )
        """,
        """
        CREATE TABLE tokens (
            id TEXT PRIMARY KEY,
            secret_hash TEXT NOT NULL,
            group_name TEXT NOT NULL REFERENCES groups (name),
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            uses BIGINT NOT NULL CHECK (uses >= 0),
            uses_left BIGINT NOT NULL CHECK (uses_left >= 0)
        )
        """,
        """
        CREATE TABLE connectors (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            host TEXT NOT NULL,
            group_name TEXT NOT NULL REFERENCES groups (name),
            registered_at BIGINT NOT NULL,
            last_seen BIGINT,
            software TEXT NOT NULL
        )
        """,
        "CREATE INDEX connectors_group_name ON connectors (group_name)",
        """
        CREATE TABLE certificates (
            fingerprint TEXT PRIMARY KEY,
            connector_id TEXT NOT NULL REFERENCES connectors (id) ON DELETE CASCADE,
            serial TEXT NOT NULL,
            issued_at BIGINT NOT NULL,
            not_after BIGINT NOT NULL,
            issued_by_relay BOOLEAN NOT NULL
        )
        """,
        "CREATE INDEX certificates_connector_id ON certificates (connector_id)",
        // Membership's generation: every change to who is registered, in which group, with which certificate,
        // bumps it in the changing transaction and tells listening relays (NOTIFY is sent at commit). The row
        // lock also puts membership writes in one order.
        """
        CREATE TABLE generations (
            name TEXT PRIMARY KEY,
            value BIGINT NOT NULL
        )
        """,
        "INSERT INTO generations (name, value) VALUES ('membership', 0)",
        """
        CREATE FUNCTION sallyport_membership_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE generations SET value = value + 1 WHERE name = 'membership';
            PERFORM pg_notify('\(membershipChannel)', '');
            RETURN NULL;
        END
        $$
        """,
        """
        CREATE TRIGGER connectors_membership AFTER INSERT OR DELETE OR UPDATE OF group_name ON connectors
        FOR EACH ROW EXECUTE FUNCTION sallyport_membership_changed()
        """,
        """
        CREATE TRIGGER certificates_membership AFTER INSERT OR DELETE ON certificates
        FOR EACH ROW EXECUTE FUNCTION sallyport_membership_changed()
        """,
    ]

    /// Relays sharing the store, each refreshing its row every few seconds.
    static let version2 = [
        """
        CREATE TABLE relays (
            address TEXT PRIMARY KEY,
            server_name TEXT NOT NULL,
            software TEXT NOT NULL,
            apps_digest TEXT NOT NULL,
            started_at BIGINT NOT NULL,
            seen_at BIGINT NOT NULL
        )
        """
    ]

    /// Single-use values (sign-in states, single-use across relays) and secrets the relays share (the session
    /// key, unless relay.yaml names a key file).
    static let version3 = [
        """
        CREATE TABLE used_once (
            key TEXT PRIMARY KEY,
            expires_at BIGINT NOT NULL
        )
        """,
        "CREATE INDEX used_once_expires_at ON used_once (expires_at)",
        """
        CREATE TABLE secrets (
            name TEXT PRIMARY KEY,
            value BYTEA NOT NULL
        )
        """,
    ]
}
