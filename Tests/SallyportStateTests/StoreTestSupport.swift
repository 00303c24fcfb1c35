import Foundation
import Logging
import SallyportState
import SallyportTesting
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The stores the contract tests run against.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { self.rawValue }
}

/// A store of `backend` for a test directory: a fresh, empty one for a new `directory`; the same data again for
/// a directory used before. PostgreSQL stores live in a database of their own on the test process's shared
/// server, named after the directory.
func makeStore(_ backend: Backend, in directory: String) async throws -> any RelayStore {
    switch backend {
    case .sqlite:
        return try await openSQLiteStore(path: databasePath(in: directory))
    case .postgres:
        return try await openPostgresStore(database: try await postgresDatabase(for: directory))
    }
}

/// The database of a test directory on the shared server, created on first use.
func postgresDatabase(for directory: String) async throws -> String {
    let marker = directory + "/postgres-database"
    if let name = try? String(contentsOfFile: marker, encoding: .utf8) { return name }
    let name = (directory as NSString).lastPathComponent
    try await PostgresServer.shared().createDatabase(name)
    try name.write(toFile: marker, atomically: true, encoding: .utf8)
    return name
}

func postgresConfiguration(database: String, server: PostgresServer, operationTimeout: Duration = .seconds(3)) -> PostgresStore.Configuration {
    PostgresStore.Configuration(
        host: server.host, port: server.port, database: database, user: server.user, password: server.password, tls: .disable,
        operationTimeout: operationTimeout
    )
}

func openPostgresStore(database: String, operationTimeout: Duration = .seconds(3)) async throws -> PostgresStore {
    let server = try await PostgresServer.shared()
    return try await PostgresStore.open(postgresConfiguration(database: database, server: server, operationTimeout: operationTimeout), logger: quietLogger)
}

let quietLogger: Logger = {
    var logger = Logger(label: "sallyport.state.tests")
    logger.logLevel = .error
    return logger
}()

/// Where the SQLite store of a test directory lives.
func databasePath(in directory: String) -> String {
    directory + "/state.db"
}

func openSQLiteStore(path: String) async throws(StoreError) -> SQLiteStore {
    try await SQLiteStore.open(path: path, logger: quietLogger)
}

/// Runs `body` with a fresh directory (mode 0700, like the relay's state directory), removed afterwards.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let base = NSTemporaryDirectory().hasSuffix("/") ? String(NSTemporaryDirectory().dropLast()) : NSTemporaryDirectory()
    var template = Array("\(base)/sallyport-state-XXXXXX".utf8CString)
    guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
        throw CocoaError(.fileWriteUnknown)
    }
    let path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

/// Runs `body` with a fresh, empty store of `backend`, closed afterwards.
func withStore(_ backend: Backend, _ body: (any RelayStore) async throws -> Void) async throws {
    try await withTemporaryDirectory { directory in
        let store = try await makeStore(backend, in: directory)
        do {
            try await body(store)
        } catch {
            await store.close()
            throw error
        }
        await store.close()
    }
}

// MARK: Records

/// A whole second, so that every store can give it back exactly.
let t0 = Date(timeIntervalSince1970: 1_750_000_000)

func token(_ id: String = "tok1", secret: String = "hash1", group: String = "dc-a", uses: Int = 1, expiresAt: Date = t0 + 3600)
    -> TokenRecord
{
    TokenRecord(id: id, secretHash: secret, group: group, createdAt: t0, expiresAt: expiresAt, uses: uses, usesLeft: uses)
}

func connector(_ id: String = "c-1", group: String = "dc-a", registeredAt: Date = t0) -> ConnectorRecord {
    ConnectorRecord(id: id, name: "name-\(id)", host: "host-\(id).example", group: group, registeredAt: registeredAt, software: "0.1.0")
}

func certificate(_ fingerprint: String, of connectorID: String = "c-1", issuedAt: Date = t0, notAfter: Date = t0 + 86400)
    -> CertificateRecord
{
    CertificateRecord(
        fingerprint: fingerprint, connectorID: connectorID, serial: "01\(fingerprint)", issuedAt: issuedAt, notAfter: notAfter,
        issuedByRelay: true
    )
}
