import Foundation
import SQLiteNIO
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

// MARK: Serializing a store's operations

/// A first-come-first-served lock that suspends instead of blocking a thread, so that one store's multi-statement
/// transactions never interleave on its shared connection. Waiting is not cancellable: every holder is a short
/// database operation.
final class AsyncLock: Sendable {
    private struct State {
        var locked = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    /// Runs `body` while holding the lock.
    func withLock<T, Failure: Error>(_ body: () async throws(Failure) -> T) async throws(Failure) -> T {
        await self.lock()
        defer { self.unlock() }
        return try await body()
    }

    private func lock() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let acquired = self.state.withLock { state in
                if state.locked {
                    state.waiters.append(continuation)
                    return false
                }
                state.locked = true
                return true
            }
            if acquired { continuation.resume() }
        }
    }

    private func unlock() {
        // The lock passes straight to the next waiter (it stays locked), so no newcomer can overtake it.
        let next = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.locked = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}

// MARK: Errors

extension StoreError {
    /// The error for a database that cannot be read as SQLite (garbage, truncated, corrupted).
    static func notReadable(_ path: String, _ detail: String) -> StoreError {
        StoreError(
            .unavailable,
            "state database \(path) is not a readable SQLite database (\(detail)): restore it from a backup, or move it "
                + "away to start with an empty registry (every connector must then register again)"
        )
    }

    /// The error for a database that cannot be opened, created or written.
    static func notWritable(_ path: String, _ detail: String) -> StoreError {
        StoreError(
            .unavailable,
            "cannot open/write state database \(path) (\(detail)): check that the directory exists and the relay's user can write it"
        )
    }

    /// Translates whatever SQLiteNIO threw into an error that names the file and says what to do. Constraint
    /// failures the store did not foresee become `.conflict` or `.notFound` with SQLite's words.
    static func sqlite(_ error: any Error, path: String) -> StoreError {
        guard let error = error as? SQLiteError else {
            return StoreError(.unavailable, "state database \(path) failed (\(error)): check the relay's log and the file")
        }
        let detail = error.message.hasPrefix("Failed to open") ? "\(error.reason)" : error.message
        switch error.reason {
        case .notADatabase, .corrupt, .corruptIndex, .corruptSequenceSchema, .corruptVirtualTable, .ioErrorBadDataChecksum:
            return .notReadable(path, detail)
        case .full:
            return .notWritable(path, "\(detail); free space on its file system")
        case .readOnly, .readonlyCantLock, .readonlyInRecovery, .readonlyInRollback, .readonlyBackingMoved, .readonlyDirectory,
            .cantOpen, .cantOpenDirectory, .cantOpenInvalidPath, .cantOpenCygwinPath, .cantOpenUnfollowedSymlink,
            .permission, .auth, .noLFS,
            .ioError, .ioErrorFailedRead, .ioErrorIncompleteRead, .ioErrorFailedWrite, .ioErrorFailedSync, .ioErrorFailedDirSync,
            .ioErrorFailedTruncate, .ioErrorFailedStat, .ioErrorFailedUnlock, .ioErrorFailedReadLock, .ioErrorFailedDelete,
            .ioErrorNoMemory, .ioErrorFailedAccess, .ioErrorFailedLockCheck, .ioErrorFailedAdvisoryLock, .ioErrorFailedClose,
            .ioErrorFailedSharedMemOpen, .ioErrorFailedSharedMemSize, .ioErrorFailedSharedMemMap, .ioErrorFailedDeleteNonexistent,
            .ioErrorFailedMemoryMap, .ioErrorCantFindTempdir, .ioErrorCygwinPath, .ioErrorCorruptedFilesystem:
            return .notWritable(path, detail)
        case .busy, .busyTimeout, .busyInRecovery, .busyInSnapshot, .locked, .lockedBySharedCache, .lockedVirtualTable:
            return StoreError(
                .unavailable,
                "state database \(path) stayed locked by another process (\(detail)): make sure only one relay uses this file"
            )
        case .constraintForeignKeyFailed:
            return StoreError(.notFound, "state database \(path) refused a reference to a missing row (\(detail))")
        case .constraintUniqueFailed, .constraintPrimaryKeyFailed, .constraintUniqueRowIDFailed:
            return StoreError(.conflict, "state database \(path) already holds this row (\(detail))")
        default:
            return StoreError(
                .unavailable,
                "state database \(path) failed (\(detail)): check the relay's log; if it persists, restore the database from a backup"
            )
        }
    }
}

// MARK: The database file

/// Makes sure `path` is a file the relay can open for writing, creating it with mode 0600 if it is missing, before
/// SQLite opens it: SQLite would create it with the umask's mode, and would say little more than "unable to open".
/// Returns true if it created the file.
func prepareDatabaseFile(path: String) throws(StoreError) -> Bool {
    let created = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
    if created >= 0 {
        // open(2) applies the umask; fchmod does not, so the mode is exactly 0600 whatever the umask.
        let chmodFailed = fchmod(created, 0o600) != 0 ? errno : 0
        _ = close(created)
        if chmodFailed != 0 { throw .notWritable(path, "chmod 0600: \(String(cString: strerror(chmodFailed)))") }
        return true
    }
    guard errno == EEXIST else { throw .notWritable(path, String(cString: strerror(errno))) }
    let existing = open(path, O_RDWR | O_CLOEXEC)
    guard existing >= 0 else { throw .notWritable(path, String(cString: strerror(errno))) }
    _ = close(existing)
    return false
}

/// The file's permission bits, or nil if it cannot be examined.
func permissionBits(path: String) -> UInt16? {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    return UInt16(truncatingIfNeeded: info.st_mode) & 0o7777
}

// MARK: Values

/// Dates are stored as INTEGER milliseconds since 1970: exact to compare in SQL, and a date given to the store
/// with millisecond precision reads back equal.
func milliseconds(_ date: Date) -> SQLiteData {
    .integer(SQLiteInt64((date.timeIntervalSince1970 * 1000).rounded()))
}

/// Reads typed columns of one row, treating a missing or mistyped value as a damaged database.
struct RowReader {
    let row: SQLiteRow
    let path: String

    func text(_ column: String) throws(StoreError) -> String {
        guard case .text(let value) = row.column(column) else { throw self.unexpected(column) }
        return value
    }

    func integer(_ column: String) throws(StoreError) -> Int {
        guard case .integer(let value) = row.column(column) else { throw self.unexpected(column) }
        return Int(value)
    }

    func bool(_ column: String) throws(StoreError) -> Bool {
        try self.integer(column) != 0
    }

    func date(_ column: String) throws(StoreError) -> Date {
        Date(timeIntervalSince1970: Double(try self.integer(column)) / 1000)
    }

    func optionalDate(_ column: String) throws(StoreError) -> Date? {
        if case .null = row.column(column) { return nil }
        return try self.date(column)
    }

    private func unexpected(_ column: String) -> StoreError {
        .notReadable(self.path, "unexpected value \(row.column(column)?.description ?? "(none)") in column \(column)")
    }
}
