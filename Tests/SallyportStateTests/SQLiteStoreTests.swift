import Foundation
import SallyportState
import Testing

/// What only the SQLite store does: its file, its schema version, and what it says about a bad file. The tests
/// run as root, whom permission bits do not stop, so "unwritable" paths are ones no user can create.
@Suite("SQLiteStore files")
struct SQLiteStoreTests {
    private static let writeRemedy = "check that the directory exists and the relay's user can write it"
    private static let readRemedy = "restore it from a backup, or move it away to start with an empty registry"

    @Test func theDatabaseIsCreatedWithMode0600AndUsesWAL() async throws {
        try await withTemporaryDirectory { directory in
            let path = databasePath(in: directory)
            let store = try await openSQLiteStore(path: path)
            try await store.addGroup("g", at: t0)
            #expect(try permissions(path) == 0o600)
            // SQLite gives the write-ahead log the database's own mode.
            #expect(try permissions(path + "-wal") == 0o600)
            await store.close()
            #expect(try permissions(path) == 0o600)
        }
    }

    @Test func aDatabaseFromANewerSallyportIsRefused() async throws {
        try await withTemporaryDirectory { directory in
            let path = databasePath(in: directory)
            try await openSQLiteStore(path: path).close()
            // PRAGMA user_version is the big-endian 32-bit integer at offset 60 of the header.
            try overwrite(path, at: 60, with: [0, 0, 0, 99])
            let error = await #expect(throws: StoreError.self) { try await openSQLiteStore(path: path) }
            #expect(error?.code == .unavailable)
            #expect(error?.description.contains(path) == true)
            #expect(error?.description.contains("newer Sallyport (schema 99, this build knows 4)") == true)
            #expect(error?.description.contains("upgrade the relay or restore a backup") == true)
        }
    }

    @Test(arguments: ["parent-is-a-file", "missing-parent", "path-is-a-directory"])
    func aPathThatCannotBeWrittenIsExplained(_ kind: String) async throws {
        try await withTemporaryDirectory { directory in
            let path: String
            switch kind {
            case "parent-is-a-file":
                try Data("x".utf8).write(to: URL(fileURLWithPath: directory + "/file"))
                path = directory + "/file/state.db"
            case "missing-parent":
                path = directory + "/missing/state.db"
            default:
                path = directory + "/state.db"
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
            }
            let error = await #expect(throws: StoreError.self) { try await openSQLiteStore(path: path) }
            #expect(error?.code == .unavailable)
            #expect(error?.description.contains("cannot open/write state database \(path)") == true)
            #expect(error?.description.contains(Self.writeRemedy) == true)
        }
    }

    @Test func aFileOfGarbageIsExplained() async throws {
        try await withTemporaryDirectory { directory in
            let path = databasePath(in: directory)
            try Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }).write(to: URL(fileURLWithPath: path))
            try await expectNotReadable(path)
        }
    }

    @Test func aDatabaseWithAnOverwrittenHeaderPageIsExplained() async throws {
        try await withTemporaryDirectory { directory in
            let path = try await populatedDatabase(in: directory)
            try overwrite(path, at: 0, with: [UInt8](repeating: 0xA5, count: 4096))
            try await expectNotReadable(path)
        }
    }

    @Test func aDatabaseWithADamagedTablePageIsExplained() async throws {
        try await withTemporaryDirectory { directory in
            let path = try await populatedDatabase(in: directory)
            // Page 2 is the first table's root page; the header stays valid, so only the quick check at open sees it.
            try overwrite(path, at: 4096, with: [UInt8](repeating: 0xA5, count: 4096))
            try await expectNotReadable(path)
        }
    }

    @Test func aClosedStoreRefusesFurtherCalls() async throws {
        try await withTemporaryDirectory { directory in
            let store = try await openSQLiteStore(path: databasePath(in: directory))
            await store.close()
            await store.close()
            let error = await #expect(throws: StoreError.self) { try await store.groups() }
            #expect(error?.code == .unavailable)
        }
    }

    // MARK: Helpers

    private func expectNotReadable(_ path: String) async throws {
        let error = await #expect(throws: StoreError.self) { try await openSQLiteStore(path: path) }
        #expect(error?.code == .unavailable)
        #expect(error?.description.contains("state database \(path) is not a readable SQLite database") == true)
        #expect(error?.description.contains(Self.readRemedy) == true)
    }

    /// A closed database with a few rows in every table (closing checkpoints the write-ahead log into the file).
    private func populatedDatabase(in directory: String) async throws -> String {
        let path = databasePath(in: directory)
        let store = try await openSQLiteStore(path: path)
        try await store.addToken(token())
        try await store.addConnector(connector("c-1"), certificate: certificate("aa11"))
        await store.close()
        #expect(!FileManager.default.fileExists(atPath: path + "-wal"))
        return path
    }

    private func overwrite(_ path: String, at offset: UInt64, with bytes: [UInt8]) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: offset)
        try handle.write(contentsOf: bytes)
    }

    private func permissions(_ path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return try #require((attributes[.posixPermissions] as? NSNumber)?.intValue) & 0o777
    }
}
