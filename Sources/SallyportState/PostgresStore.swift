public import Logging
import NIOCore
import NIOSSL
import PostgresNIO
import Synchronization

/// The relay's state in a PostgreSQL database that several relays share.
///
/// Open it with ``open(_:logger:)`` and call ``close()`` when done. Operations run concurrently on a small pool
/// of connections; ones that change several rows run in a transaction, and the database's constraints (not
/// checks made before writing) decide conflicts between relays. Every operation gives up after
/// ``Configuration/operationTimeout`` with `.unavailable`, so a database that is down or unreachable slows
/// nothing for long: the relay's request path never waits on it.
public final class PostgresStore: RelayStore {
    /// Where the database is and how to reach it.
    public struct Configuration: Sendable {
        /// How the connection is protected.
        public enum TLS: Sendable, Equatable {
            /// Plain TCP: only for a database on the same host or a network as trusted as one.
            case disable
            /// TLS, the server's certificate checked against `caFile` (PEM; nil: the system's trust store) and
            /// the host name, as libpq's `sslmode=verify-full`.
            case verifyFull(caFile: String?)
            /// TLS without checking the certificate, as libpq's `sslmode=require`.
            case require
        }

        public var host: String
        public var port: Int
        public var database: String
        public var user: String
        public var password: String?
        public var tls: TLS
        /// Connections at most in the pool, the listening one included.
        public var maxConnections: Int
        /// How long one operation may take, waiting for a connection included.
        public var operationTimeout: Duration

        /// Creates a configuration.
        public init(
            host: String, port: Int = 5432, database: String, user: String, password: String?, tls: TLS = .verifyFull(caFile: nil),
            maxConnections: Int = 10, operationTimeout: Duration = .seconds(3)
        ) {
            self.host = host
            self.port = port
            self.database = database
            self.user = user
            self.password = password
            self.tls = tls
            self.maxConnections = maxConnections
            self.operationTimeout = operationTimeout
        }

        /// `user@host:port/database`, for messages (never the password).
        public var name: String { "\(user)@\(host):\(port)/\(database)" }
    }

    /// Where the store is, for messages.
    public let name: String
    let client: PostgresClient
    let configuration: Configuration
    let logger: Logger
    private let running: Task<Void, Never>
    private let listening = Mutex<Task<Void, Never>?>(nil)
    private let closed = Mutex(false)
    /// Who hears of other relays' membership changes, each with a stream of its own.
    private let subscribers = Mutex<(next: Int, all: [Int: AsyncStream<Void>.Continuation])>((0, [:]))

    private init(configuration: Configuration, client: PostgresClient, logger: Logger) {
        self.name = "PostgreSQL \(configuration.name)"
        self.configuration = configuration
        self.client = client
        self.logger = logger
        self.running = Task { await client.run() }
    }

    /// Connects, creates or migrates the schema, and starts listening for other relays' changes.
    ///
    /// Throws `.unavailable`, saying what to check, if the database cannot be reached or refuses the user, or
    /// its schema is newer than this build knows.
    public static func open(_ configuration: Configuration, logger: Logger) async throws(StoreError) -> PostgresStore {
        let tls = try Self.tls(configuration)
        var options = PostgresClient.Configuration.Options()
        options.maximumConnections = max(2, configuration.maxConnections)
        options.connectTimeout = configuration.operationTimeout
        options.keepAliveBehavior = .init(frequency: .seconds(15))
        var client = PostgresClient.Configuration(
            host: configuration.host, port: configuration.port, username: configuration.user, password: configuration.password,
            database: configuration.database, tls: tls.map { .require($0) } ?? .disable
        )
        client.options = options
        var quiet = logger
        // postgres-nio reports every failed connection attempt at error level; the store says it once, better.
        quiet.logLevel = max(logger.logLevel, .critical)
        let store = PostgresStore(configuration: configuration, client: PostgresClient(configuration: client, backgroundLogger: quiet), logger: logger)
        do {
            // A connection of its own first: the pool retries a refused login or a missing database quietly until
            // the deadline, and would only say that the database did not answer.
            let context: NIOSSLContext?
            do {
                context = try tls.map { try NIOSSLContext(configuration: $0) }
            } catch {
                throw StoreError(.unavailable, "cannot set up TLS for \(store.name) (\(error)): check store.postgres.caFile")
            }
            var direct = PostgresConnection.Configuration(
                host: configuration.host, port: configuration.port, username: configuration.user, password: configuration.password,
                database: configuration.database, tls: context.map { .require($0) } ?? .disable
            )
            let (seconds, attoseconds) = configuration.operationTimeout.components
            direct.options.connectTimeout = .milliseconds(max(1, seconds * 1000 + attoseconds / 1_000_000_000_000_000))
            let first = direct
            let firstLogger = quiet
            // Migrations may wait for another relay's and take a while on a large database: they get longer.
            let version = try await store.withDeadline(max(.seconds(60), configuration.operationTimeout), conflicts: [:]) {
                let connection = try await PostgresConnection.connect(configuration: first, id: 0, logger: firstLogger)
                do {
                    let version = try await store.migrate(connection)
                    try? await connection.close()
                    return version
                } catch {
                    try? await connection.close()
                    throw error
                }
            }
            try store.migrated(from: version)
        } catch {
            await store.close()
            throw StoreError.postgres(error, store: store.name)
        }
        store.listening.withLock { $0 = Task { await store.listen() } }
        return store
    }

    /// Whether the database can be reached and logged in to, and which schema it holds, without changing
    /// anything (`sallyport relay doctor`): a sentence for the operator, or why not.
    public static func check(_ configuration: Configuration, logger: Logger) async -> Result<String, StoreError> {
        let name = "PostgreSQL \(configuration.name)"
        do {
            let context = try Self.tls(configuration).map { try NIOSSLContext(configuration: $0) }
            var direct = PostgresConnection.Configuration(
                host: configuration.host, port: configuration.port, username: configuration.user, password: configuration.password,
                database: configuration.database, tls: context.map { .require($0) } ?? .disable
            )
            direct.options.connectTimeout = .seconds(5)
            var quiet = logger
            quiet.logLevel = .critical
            let connection = try await PostgresConnection.connect(configuration: direct, id: 0, logger: quiet)
            defer { Task { try? await connection.close() } }
            let exists = try await connection.query("SELECT to_regclass('sallyport_schema') IS NOT NULL", logger: quiet).collect()
            guard try exists.first?.decode(Bool.self) == true else {
                return .success("\(name) answers; its tables do not exist yet (the relay creates them when it starts)")
            }
            let version = try await connection.query("SELECT version FROM sallyport_schema", logger: quiet).collect().first?.decode(Int.self) ?? 0
            if version > PostgresMigrations.latest {
                return .failure(StoreError(.unavailable, "\(name) holds schema \(version), newer than this build's \(PostgresMigrations.latest): upgrade this relay"))
            }
            return .success("\(name) answers; schema \(version)\(version < PostgresMigrations.latest ? " (this build migrates it to \(PostgresMigrations.latest) at start)" : "")")
        } catch {
            return .failure(StoreError.postgres(error, store: name))
        }
    }

    /// Stops listening and closes every connection; later calls throw `.unavailable`.
    public func close() async {
        guard !self.closed.withLock({ closed in defer { closed = true }; return closed }) else { return }
        self.listening.withLock { $0 }?.cancel()
        for subscriber in self.subscribers.withLock({ Array($0.all.values) }) { subscriber.finish() }
        self.running.cancel()
        await self.running.value
    }

    /// Yields on every NOTIFY of a membership change, and after the listening connection was (re)made; each
    /// call gets a stream of its own, finished when the store closes.
    public func membershipChanges() -> AsyncStream<Void> {
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let (id, closed) = self.subscribers.withLock { subscribers in
            defer { subscribers.next += 1 }
            subscribers.all[subscribers.next] = continuation
            return (subscribers.next, self.closed.withLock { $0 })
        }
        continuation.onTermination = { _ in _ = self.subscribers.withLock { $0.all.removeValue(forKey: id) } }
        if closed { continuation.finish() }
        return stream
    }

    /// Tells every subscriber that membership may have changed.
    private func announceChange() {
        for subscriber in self.subscribers.withLock({ Array($0.all.values) }) { subscriber.yield() }
    }

    // MARK: Schema

    /// Brings the schema up to date in one transaction under the migration lock; returns the version found.
    private func migrate(_ connection: PostgresConnection) async throws -> Int {
        try await connection.withTransaction(logger: self.logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(PostgresMigrations.lockKey))", logger: self.logger)
            try await connection.query("\(unescaped: PostgresMigrations.versionTable)", logger: self.logger)
            var version = 0
            for try await found in try await connection.query("SELECT version FROM sallyport_schema", logger: self.logger).decode(Int.self) {
                version = found
            }
            guard version < PostgresMigrations.latest else { return version }
            for statements in PostgresMigrations.all[version...] {
                for statement in statements { try await connection.query("\(unescaped: statement)", logger: self.logger) }
            }
            try await connection.query(
                """
                INSERT INTO sallyport_schema (singleton, version) VALUES (TRUE, \(PostgresMigrations.latest))
                ON CONFLICT (singleton) DO UPDATE SET version = excluded.version
                """,
                logger: self.logger
            )
            return version
        }
    }

    private func migrated(from version: Int) throws(StoreError) {
        guard version <= PostgresMigrations.latest else {
            throw StoreError(
                .unavailable,
                "\(self.name) holds schema \(version), written by a newer Sallyport (this build knows \(PostgresMigrations.latest)): upgrade this relay like the others"
            )
        }
        if version < PostgresMigrations.latest {
            self.logger.info("migrated the state database", metadata: ["database": "\(self.name)", "from": "\(version)", "schema": "\(PostgresMigrations.latest)"])
        }
    }

    // MARK: Listening

    /// Keeps one connection listening for membership NOTIFYs, making a new one whenever it is lost; each new
    /// one yields once, since news may have come while there was none.
    private func listen() async {
        var failing = false
        while !Task.isCancelled {
            do {
                try await self.client.withConnection { connection in
                    try await connection.listen(on: PostgresMigrations.membershipChannel) { notifications in
                        if failing { self.logger.notice("listening for membership changes again", metadata: ["database": "\(self.name)"]) }
                        failing = false
                        self.announceChange()
                        for try await _ in notifications { self.announceChange() }
                    }
                }
            } catch {
                if !failing, !Task.isCancelled {
                    self.logger.warning(
                        "lost the database connection that hears of other relays' changes; polling until it is back",
                        metadata: ["database": "\(self.name)", "error": "\(StoreError.postgres(error, store: self.name))"]
                    )
                }
                failing = true
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    // MARK: Running statements

    /// Runs `body` on a pooled connection within the operation deadline.
    func run<T: Sendable>(
        conflicts: [String: String] = [:], _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws(StoreError) -> T {
        try await self.withDeadline(conflicts: conflicts) { try await self.client.withConnection(body) }
    }

    /// Runs `body` in a transaction within the operation deadline; rolls back if anything throws. A
    /// ``StoreError`` thrown by `body` comes out as it is; a constraint named in `conflicts` becomes `.conflict`
    /// with that message.
    func transaction<T: Sendable>(
        conflicts: [String: String] = [:], _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws(StoreError) -> T {
        try await self.withDeadline(conflicts: conflicts) {
            try await self.client.withConnection { connection in
                try await connection.withTransaction(logger: self.logger) { connection in try await body(connection) }
            }
        }
    }

    /// Runs `body` as a task of its own and gives up on it after the deadline: a connection that hangs (a
    /// database behind a dead link) must not hold up the caller, whether or not it honours cancellation.
    func withDeadline<T: Sendable>(
        _ deadline: Duration? = nil, conflicts: [String: String], _ body: @escaping @Sendable () async throws -> T
    ) async throws(StoreError) -> T {
        guard !self.closed.withLock({ $0 }) else {
            throw StoreError(.unavailable, "\(self.name) was used after the relay closed it")
        }
        let timeout = deadline ?? self.configuration.operationTimeout
        let outcome: Result<T, any Error> = await withCheckedContinuation { continuation in
            let race = Race(continuation)
            let work = Task {
                let result: Result<T, any Error>
                do { result = .success(try await body()) } catch { result = .failure(error) }
                race.finish(result)
            }
            race.timer(Task {
                try? await Task.sleep(for: timeout)
                work.cancel()
                race.finish(.failure(DeadlinePassed(timeout: timeout)))
            })
        }
        switch outcome {
        case .success(let value): return value
        case .failure(let error): throw StoreError.postgres(error, store: self.name, conflicts: conflicts)
        }
    }

    struct DeadlinePassed: Error {
        var timeout: Duration
    }

    /// An operation against its deadline: whichever finishes first resumes the caller; the operation's end
    /// stops the timer.
    private final class Race<T: Sendable>: Sendable {
        private let state: Mutex<(continuation: CheckedContinuation<Result<T, any Error>, Never>?, timer: Task<Void, Never>?)>

        init(_ continuation: CheckedContinuation<Result<T, any Error>, Never>) {
            self.state = Mutex((continuation, nil))
        }

        func timer(_ task: Task<Void, Never>) {
            let done = self.state.withLock { state in
                state.timer = task
                return state.continuation == nil
            }
            if done { task.cancel() }
        }

        func finish(_ result: Result<T, any Error>) {
            let (continuation, timer) = self.state.withLock { state in
                defer { state.continuation = nil }
                return (state.continuation, state.timer)
            }
            guard let continuation else { return }
            timer?.cancel()
            continuation.resume(returning: result)
        }
    }

    /// The TLS settings both the pool and the first connection use; nil for plain TCP.
    private static func tls(_ configuration: Configuration) throws(StoreError) -> TLSConfiguration? {
        var tls = TLSConfiguration.makeClientConfiguration()
        switch configuration.tls {
        case .disable:
            return nil
        case .require:
            tls.certificateVerification = .none
        case .verifyFull(let caFile):
            tls.certificateVerification = .fullVerification
            if let caFile {
                do {
                    tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
                } catch {
                    throw StoreError(.unavailable, "cannot read the database's CA file \(caFile) (\(error)): check store.postgres.caFile")
                }
            }
        }
        return tls
    }
}
