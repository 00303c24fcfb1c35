public import Logging
import SQLiteNIO
import Synchronization

/// The relay's state in one embedded SQLite file (WAL mode, foreign keys on).
///
/// Open it with ``open(path:logger:)`` and call ``close()`` when done. One store uses one connection and runs
/// its operations one at a time, in call order; several relay processes must not share the file.
public final class SQLiteStore: RelayStore {
    /// The database file.
    public let path: String
    let connection: SQLiteConnection
    let logger: Logger
    private let lock = AsyncLock()
    private let closed = Mutex(false)

    private init(path: String, connection: SQLiteConnection, logger: Logger) {
        self.path = path
        self.connection = connection
        self.logger = logger
    }

    deinit {
        // A store dropped without close(): SQLiteNIO requires its connection closed before it goes.
        if !self.closed.withLock({ $0 }) { _ = self.connection.close() }
    }

    /// Opens the state database at `path`, creating it (mode 0600) and its tables if missing, and migrating an
    /// older schema.
    ///
    /// The parent directory must exist. Throws `.unavailable`, with what to do, if the file cannot be opened or
    /// written, is not a readable SQLite database, or was written by a newer Sallyport.
    public static func open(path: String, logger: Logger) async throws(StoreError) -> SQLiteStore {
        if try prepareDatabaseFile(path: path) {
            logger.info("created the state database", metadata: ["path": "\(path)"])
        } else if let mode = permissionBits(path: path), mode & 0o077 != 0 {
            logger.warning(
                "the state database is readable by other users; chmod 600 it",
                metadata: ["path": "\(path)", "mode": "\(String(mode, radix: 8))"]
            )
        }
        let connection: SQLiteConnection
        do {
            connection = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        } catch {
            throw .sqlite(error, path: path)
        }
        let store = SQLiteStore(path: path, connection: connection, logger: logger)
        do {
            try await store.prepareSchema()
        } catch {
            await store.close()
            throw error
        }
        return store
    }

    /// Closes the connection, after any operation in progress; later calls throw `.unavailable`.
    public func close() async {
        await self.lock.withLock { () async in
            guard !self.closed.withLock({ $0 }) else { return }
            self.closed.withLock { $0 = true }
            do {
                try await self.connection.close().get()
            } catch {
                self.logger.warning("closing the state database failed", metadata: ["path": "\(self.path)", "error": "\(error)"])
            }
        }
    }

    // MARK: Opening

    private func prepareSchema() async throws(StoreError) {
        // busy_timeout first, so that the statements after it wait for another process's lock instead of failing;
        // it also replaces SQLiteNIO's busy handler, which would wait forever.
        try await self.execute("PRAGMA busy_timeout = 5000")
        try await self.execute("PRAGMA foreign_keys = ON")
        // The first read of the file: a file that is not a database fails here.
        let version = try await self.userVersion()
        try await self.quickCheck()
        guard version <= Migrations.latest else {
            throw StoreError(
                .unavailable,
                "state database \(self.path) was written by a newer Sallyport (schema \(version), this build knows "
                    + "\(Migrations.latest)): upgrade the relay or restore a backup"
            )
        }
        let mode = try await self.execute("PRAGMA journal_mode = WAL").first?.column("journal_mode")?.string
        if mode?.lowercased() != "wal" {
            self.logger.warning(
                "the state database cannot use write-ahead logging; writes will be slower",
                metadata: ["path": "\(self.path)", "journal_mode": "\(mode ?? "?")"]
            )
        }
        for (index, statements) in Migrations.all.enumerated() where index >= version {
            try await self.transaction { () async throws(StoreError) in
                // Another process may have migrated since we read the version.
                guard try await self.userVersion() == index else { return }
                for statement in statements { try await self.execute(statement) }
                try await self.execute("PRAGMA user_version = \(index + 1)")
            }
            self.logger.info("migrated the state database", metadata: ["path": "\(self.path)", "schema": "\(index + 1)"])
        }
    }

    private func userVersion() async throws(StoreError) -> Int {
        let rows = try await self.execute("PRAGMA user_version")
        guard let version = rows.first?.column("user_version")?.integer else {
            throw .notReadable(self.path, "PRAGMA user_version gave no value")
        }
        return Int(version)
    }

    private func quickCheck() async throws(StoreError) {
        let results = try await self.execute("PRAGMA quick_check(3)").compactMap { $0.columns.first?.data.string }
        guard results == ["ok"] else {
            throw .notReadable(self.path, "quick_check: " + results.joined(separator: "; "))
        }
    }

    // MARK: Running statements

    /// Runs `body` alone on the connection: no other operation of this store starts until it ends.
    func serialized<T>(_ body: () async throws(StoreError) -> T) async throws(StoreError) -> T {
        try await self.lock.withLock { () async throws(StoreError) -> T in
            guard !self.closed.withLock({ $0 }) else {
                throw StoreError(.unavailable, "state database \(self.path) was used after the relay closed it")
            }
            return try await body()
        }
    }

    /// Runs `body` in BEGIN IMMEDIATE … COMMIT (taking the write lock at once, so it cannot fail half-way on a
    /// lock upgrade), rolling back if anything throws. Call it inside ``serialized(_:)``.
    func transaction<T>(_ body: () async throws(StoreError) -> T) async throws(StoreError) -> T {
        try await self.execute("BEGIN IMMEDIATE")
        do {
            let result = try await body()
            try await self.execute("COMMIT")
            return result
        } catch {
            // SQLite may already have rolled back (e.g. after SQLITE_FULL); then this fails harmlessly.
            _ = try? await self.execute("ROLLBACK")
            throw error
        }
    }

    /// Runs one statement and returns its rows.
    @discardableResult
    func execute(_ sql: String, _ binds: [SQLiteData] = []) async throws(StoreError) -> [SQLiteRow] {
        do {
            return try await self.connection.query(sql, binds)
        } catch {
            throw .sqlite(error, path: self.path)
        }
    }

    /// Whether a statement returns at least one row.
    func exists(_ sql: String, _ binds: [SQLiteData]) async throws(StoreError) -> Bool {
        try await !self.execute(sql, binds).isEmpty
    }

    func reader(_ row: SQLiteRow) -> RowReader {
        RowReader(row: row, path: self.path)
    }
}
