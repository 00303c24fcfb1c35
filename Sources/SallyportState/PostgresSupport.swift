import Foundation
import PostgresNIO

extension StoreError {
    /// Translates whatever postgres-nio threw into an error that names the database and says what to do.
    ///
    /// PSQLError's own description hides the server's words on purpose (they may quote data); the store picks
    /// out the SQLSTATE and, for the operator, the server's message, which never holds a password.
    static func postgres(_ error: any Error, store: String, conflicts: [String: String] = [:]) -> StoreError {
        if let error = error as? StoreError { return error }
        if let error = error as? PostgresTransactionError {
            let cause = error.closureError ?? error.beginError ?? error.commitError ?? error.rollbackError
            return cause.map { .postgres($0, store: store, conflicts: conflicts) }
                ?? StoreError(.unavailable, "\(store) failed a transaction: check the database's log")
        }
        if let deadline = error as? PostgresStore.DeadlinePassed {
            return StoreError(
                .unavailable,
                "\(store) did not answer within \(deadline.timeout): check that the database is running and reachable from this relay"
            )
        }
        guard let error = error as? PSQLError else {
            if error is CancellationError { return StoreError(.unavailable, "\(store): the operation was cancelled") }
            return StoreError(.unavailable, "\(store) failed (\(error)): check the relay's log and the database")
        }
        let state = error.serverInfo?[.sqlState] ?? ""
        let message = error.serverInfo?[.message] ?? ""
        switch error.code {
        case .server:
            switch state {
            case "23505":  // unique_violation
                let constraint = error.serverInfo?[.constraintName] ?? ""
                return StoreError(.conflict, conflicts[constraint] ?? "\(store) already holds this row (\(message))")
            case "23503":  // foreign_key_violation
                let constraint = error.serverInfo?[.constraintName] ?? ""
                return StoreError(.notFound, conflicts[constraint] ?? "\(store) refused a reference to a missing row (\(message))")
            case "28P01", "28000":  // invalid_password, invalid_authorization_specification
                return StoreError(
                    .unavailable, "\(store) refused the relay's login (\(message)): check store.postgres.user and passwordFile in relay.yaml"
                )
            case "3D000":  // invalid_catalog_name
                return StoreError(
                    .unavailable, "\(store): the database does not exist (\(message)); create it, e.g. createdb -O USER DATABASE"
                )
            case "42501":  // insufficient_privilege
                return StoreError(
                    .unavailable, "\(store): the relay's user lacks a privilege (\(message)); it must own the database or its schema"
                )
            case let state where state.hasPrefix("57P") || state.hasPrefix("08") || state == "53300":
                // admin_shutdown, crash_shutdown, cannot_connect_now, connection exceptions, too_many_connections
                return StoreError(.unavailable, "\(store) is not accepting work now (\(message)); the relay retries by itself")
            default:
                return StoreError(.unavailable, "\(store) failed (SQLSTATE \(state): \(message)): check the database's log")
            }
        case .sslUnsupported:
            return StoreError(
                .unavailable, "\(store) does not offer TLS: turn ssl on in the server, or set store.postgres.tls: disable for a local database"
            )
        case .failedToAddSSLHandler:
            return StoreError(.unavailable, "\(store): cannot start TLS (\(error.underlying.map { "\($0)" } ?? "?")): check store.postgres.caFile")
        case .unsupportedAuthMechanism, .authMechanismRequiresPassword, .saslError:
            return StoreError(
                .unavailable,
                "\(store) asks for a login the relay cannot give (\(error.code)): give store.postgres.passwordFile, and use scram-sha-256 or md5 in pg_hba.conf"
            )
        case .poolClosed, .clientClosedConnection:
            return StoreError(.unavailable, "\(store) was used after the relay closed it")
        default:
            let cause = error.underlying.map { ": \($0)" } ?? ""
            return StoreError(
                .unavailable,
                "cannot reach \(store) (\(error.code)\(cause)): check that it is running and that store.postgres in relay.yaml names it"
            )
        }
    }
}

/// Dates are BIGINT milliseconds since 1970 (as in SQLite): exact to compare, and read back equal.
func epochMilliseconds(_ date: Date) -> Int64 {
    Int64((date.timeIntervalSince1970 * 1000).rounded())
}

func date(milliseconds: Int64) -> Date {
    Date(timeIntervalSince1970: Double(milliseconds) / 1000)
}

