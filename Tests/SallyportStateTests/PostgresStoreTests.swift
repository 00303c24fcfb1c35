import Foundation
@testable import SallyportState
import SallyportTesting
import Testing

/// What only the PostgreSQL store does: several relays on one database (migrations, conflicts, change news),
/// and a database that is wrong, unreachable or restarting.
@Suite("PostgresStore", .timeLimit(.minutes(2)))
struct PostgresStoreTests {
    @Test func relaysStartingTogetherMigrateOnceAndAgree() async throws {
        try await withTemporaryDirectory { directory in
            let database = try await postgresDatabase(for: directory)
            let stores = try await withThrowingTaskGroup(of: PostgresStore.self) { group in
                for _ in 0..<6 { group.addTask { try await openPostgresStore(database: database) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let server = try await PostgresServer.shared()
            #expect(try await server.query("SELECT version FROM sallyport_schema", database: database).trimmingCharacters(in: .whitespacesAndNewlines) == "\(PostgresMigrations.latest)")
            try await stores[0].addConnector(connector("c-1"), certificate: certificate("aa11"))
            for store in stores {
                #expect(try await store.connector(certificateFingerprint: "aa11")?.0.id == "c-1")
                await store.close()
            }
        }
    }

    @Test func aSchemaFromANewerSallyportIsRefused() async throws {
        try await withTemporaryDirectory { directory in
            let database = try await postgresDatabase(for: directory)
            let first = try await openPostgresStore(database: database)
            await first.close()
            _ = try await PostgresServer.shared().query("UPDATE sallyport_schema SET version = 99", database: database)
            let error = await #expect(throws: StoreError.self) { try await openPostgresStore(database: database) }
            #expect(error?.code == .unavailable)
            #expect(error?.description.contains("schema 99, written by a newer Sallyport") == true)
        }
    }

    @Test func aTokenIsSpentOnceAcrossRelays() async throws {
        try await withTemporaryDirectory { directory in
            let database = try await postgresDatabase(for: directory)
            let a = try await openPostgresStore(database: database)
            let b = try await openPostgresStore(database: database)
            try await a.addToken(token(uses: 1))
            let results = try await withThrowingTaskGroup(of: TokenRedemption.self) { group in
                for store in [a, b, a, b, a, b, a, b] {
                    group.addTask { try await store.redeemToken(id: "tok1", secretHash: "hash1", now: t0) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(results.filter { $0 == .accepted(group: "dc-a") }.count == 1)
            #expect(results.filter { $0 == .used }.count == 7)
            // The same certificate registered through two relays at once: one wins, the other is told why.
            let outcomes = await withTaskGroup(of: Result<Void, any Error>.self) { group in
                group.addTask { await Result { try await a.addConnector(connector("c-1"), certificate: certificate("ff00", of: "c-1")) } }
                group.addTask { await Result { try await b.addConnector(connector("c-2"), certificate: certificate("ff00", of: "c-2")) } }
                return await group.reduce(into: []) { $0.append($1) }
            }
            #expect(outcomes.filter { (try? $0.get()) != nil }.count == 1)
            let refusal = outcomes.compactMap { result -> StoreError? in
                guard case .failure(let error) = result else { return nil }
                return error as? StoreError
            }.first
            #expect(refusal?.code == .conflict)
            #expect(refusal?.description.contains("ff00") == true)
            await a.close()
            await b.close()
        }
    }

    @Test func anotherRelaysChangeIsHeardAtOnce() async throws {
        try await withTemporaryDirectory { directory in
            let database = try await postgresDatabase(for: directory)
            let a = try await openPostgresStore(database: database)
            let b = try await openPostgresStore(database: database)
            var news = b.membershipChanges().makeAsyncIterator()
            // The first yield says b listens (and might have missed something before).
            #expect(await news.next() != nil)
            let before = try await b.membershipGeneration()
            try await a.addConnector(connector("c-1"), certificate: certificate("aa11"))
            #expect(await news.next() != nil)
            #expect(try await b.membershipGeneration() > before)
            _ = try await a.removeConnector(id: "c-1")
            #expect(await news.next() != nil)
            #expect(try await b.connector(certificateFingerprint: "aa11") == nil)
            await a.close()
            await b.close()
            #expect(await news.next() == nil)
        }
    }

    @Test func theDoctorsCheckChangesNothingAndSaysWhatItFound() async throws {
        try await withTemporaryDirectory { directory in
            let database = try await postgresDatabase(for: directory)
            let server = try await PostgresServer.shared()
            let configuration = postgresConfiguration(database: database, server: server)
            let fresh = try await PostgresStore.check(configuration, logger: quietLogger).get()
            #expect(fresh.contains("its tables do not exist yet"))
            #expect(try await server.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", database: database).trimmingCharacters(in: .whitespacesAndNewlines) == "0")
            let store = try await openPostgresStore(database: database)
            await store.close()
            #expect(try await PostgresStore.check(configuration, logger: quietLogger).get().contains("answers; schema \(PostgresMigrations.latest)"))
            var wrong = configuration
            wrong.password = "wrong"
            guard case .failure(let error) = await PostgresStore.check(wrong, logger: quietLogger) else {
                Issue.record("a wrong password passed the check")
                return
            }
            #expect(error.description.contains("refused the relay's login"))
        }
    }

    @Test func aWrongPasswordOrAMissingDatabaseIsExplained() async throws {
        let server = try await PostgresServer.shared()
        var configuration = postgresConfiguration(database: "postgres", server: server)
        configuration.password = "wrong"
        let login = await #expect(throws: StoreError.self) { try await PostgresStore.open(configuration, logger: quietLogger) }
        #expect(login?.code == .unavailable)
        #expect(login?.description.contains("check store.postgres.user and passwordFile") == true)
        #expect(login?.description.contains("wrong") == false)

        let missing = await #expect(throws: StoreError.self) {
            try await PostgresStore.open(postgresConfiguration(database: "no-such-db", server: server), logger: quietLogger)
        }
        #expect(missing?.description.contains("the database does not exist") == true)

        configuration = postgresConfiguration(database: "postgres", server: server)
        configuration.tls = .verifyFull(caFile: nil)
        let plain = await #expect(throws: StoreError.self) { try await PostgresStore.open(configuration, logger: quietLogger) }
        #expect(plain?.description.contains("does not offer TLS") == true)
    }

    @Test func anUnreachableDatabaseFailsWithinTheDeadline() async throws {
        let server = try await PostgresServer.shared()
        var configuration = postgresConfiguration(database: "postgres", server: server, operationTimeout: .seconds(1))
        configuration.port = try FreePort.next()
        let started = ContinuousClock.now
        let error = await #expect(throws: StoreError.self) { try await PostgresStore.open(configuration, logger: quietLogger) }
        #expect(error?.code == .unavailable)
        #expect(error?.description.contains("127.0.0.1:\(configuration.port)") == true)
        // Without its own deadline the pool would wait 15 s for a connection.
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test func theStoreComesBackByItselfAfterTheDatabaseRestarts() async throws {
        let server = try await PostgresServer.start()
        try await server.createDatabase("relay")
        let store = try await PostgresStore.open(postgresConfiguration(database: "relay", server: server), logger: quietLogger)
        var news = store.membershipChanges().makeAsyncIterator()
        #expect(await news.next() != nil)
        try await store.addConnector(connector("c-1"), certificate: certificate("aa11"))
        // Its own change's NOTIFY, so that nothing is left waiting in the stream.
        #expect(await news.next() != nil)

        await server.kill()
        let down = await #expect(throws: StoreError.self) { try await store.connectors() }
        #expect(down?.code == .unavailable)

        try await server.start()
        let deadline = ContinuousClock.now + .seconds(20)
        var back: [ConnectorRecord]?
        while back == nil, ContinuousClock.now < deadline {
            back = try? await store.connectors()
            if back == nil { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(back?.map(\.id) == ["c-1"])
        // It listens again: the new listening connection says so, then hears a change made after it.
        #expect(await news.next() != nil)
        _ = try await store.removeConnector(id: "c-1")
        #expect(await news.next() != nil)
        #expect(try await store.membershipGeneration() > 0)
        await store.close()
        await server.stop()
    }
}

extension Result where Failure == any Error {
    init(_ body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
