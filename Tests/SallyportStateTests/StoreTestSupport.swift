import Foundation
import Logging
import SallyportState

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The implementation the contract tests exercise: another ``RelayStore`` runs the same cases by opening its own
/// store here (a fresh, empty one for a new `directory`; the same data again for a directory used before).
func makeStore(in directory: String) async throws -> any RelayStore {
    try await openSQLiteStore(path: databasePath(in: directory))
}

/// Where the SQLite store of a test directory lives.
func databasePath(in directory: String) -> String {
    directory + "/state.db"
}

func openSQLiteStore(path: String) async throws(StoreError) -> SQLiteStore {
    var logger = Logger(label: "sallyport.state.tests")
    logger.logLevel = .error
    return try await SQLiteStore.open(path: path, logger: logger)
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

/// Runs `body` with a fresh, empty store, closed afterwards.
func withStore(_ body: (any RelayStore) async throws -> Void) async throws {
    try await withTemporaryDirectory { directory in
        let store = try await makeStore(in: directory)
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
