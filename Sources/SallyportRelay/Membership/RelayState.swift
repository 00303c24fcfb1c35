import Foundation
import Logging
import SallyportAuth
import SallyportConfig
import SallyportPKI
import SallyportState
import SallyportTunnel
import SwiftASN1
import X509

/// Opens what the relay keeps between runs: the state directory, its database, the connector CA.
enum RelayState {
    /// A problem at start-up with the state directory or the connector CA; says what to do.
    struct StartError: Error, CustomStringConvertible {
        var description: String
    }

    /// The state database file in a state directory.
    static func databasePath(_ directory: String) -> String { (directory as NSString).appendingPathComponent("relay.db") }

    /// Creates the state directory (0700) if needed (it holds the admin socket whatever the store) and opens the
    /// store relay.yaml names.
    static func open(config: RelayConfig, logger: Logger) async throws -> any RelayStore {
        do {
            try FileManager.default.createDirectory(atPath: config.stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw StartError(description: "state: cannot create the state directory \(config.stateDirectory): \(error.localizedDescription)")
        }
        switch config.store {
        case .sqlite:
            return try await SQLiteStore.open(path: Self.databasePath(config.stateDirectory), logger: logger)
        case .postgres(let postgres):
            return try await PostgresStore.open(try Self.postgresConfiguration(postgres), logger: logger)
        }
    }

    /// The store's settings from relay.yaml's `store.postgres`, with the password read from its file.
    static func postgresConfiguration(_ config: PostgresConfig) throws -> PostgresStore.Configuration {
        var password: String?
        if let file = config.passwordFile {
            do {
                let text = try String(contentsOfFile: file, encoding: .utf8)
                password = String(text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            } catch {
                throw StartError(description: "store.postgres.passwordFile: cannot read \(file): \(error.localizedDescription)")
            }
            if password?.isEmpty != false {
                throw StartError(description: "store.postgres.passwordFile: \(file) is empty; its first line must be the database password")
            }
        }
        let tls: PostgresStore.Configuration.TLS =
            switch config.tls {
            case .disable: .disable
            case .require: .require
            case .verifyFull: .verifyFull(caFile: config.caFile)
            }
        return PostgresStore.Configuration(
            host: config.host, port: config.port, database: config.database, user: config.user, password: password, tls: tls,
            maxConnections: config.maxConnections
        )
    }

    /// The session key relays sharing a PostgreSQL store keep there, made by the first one that needs it, so
    /// that a user signed in through one relay is signed in on all of them. Nil with the SQLite store (one
    /// relay: a random key per process, as before), when `sessions.keyFile` is set (that key wins), when no
    /// app signs users in, or when the store cannot be read (logged; sign-ins then hold on this relay only).
    static func sharedSessionKey(config: RelayConfig, store: any RelayStore, logger: Logger) async -> [UInt8]? {
        guard case .postgres = config.store, config.sessions.keyFile == nil,
            config.identityProviders.contains(where: { if case .oidc = $0.kind { true } else { false } })
        else { return nil }
        var candidate = [UInt8](repeating: 0, count: 32)
        var generator = SystemRandomNumberGenerator()
        for index in candidate.indices { candidate[index] = generator.next() }
        do {
            let key = try await store.secret(named: "session-key", orStore: candidate)
            guard key.count == 32 else {
                logger.error("the session key in the state database is not 32 bytes; sign-in sessions use a key of this relay only")
                return nil
            }
            logger.info("sign-in sessions use the session key the relays share in the state database (sessions.keyFile would replace it)")
            return key
        } catch {
            logger.error("cannot read the shared session key; sign-in sessions hold on this relay only until it restarts", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// The membership service for this configuration: the CA (if configured), the CA connectors trust, and the
    /// address connectors dial.
    static func membership(config: RelayConfig, store: any RelayStore, registry: ConnectorRegistry, logger: Logger) throws -> Membership {
        var authority: CertificateAuthority?
        if let certificate = config.connectors.caCertificate, let key = config.connectors.caKey {
            do {
                authority = try CertificateAuthority.load(certificateFile: certificate, keyFile: key)
            } catch {
                throw StartError(description: "connectors.ca: \(error)")
            }
        }
        if authority == nil, config.connectors.trustedCAs.isEmpty {
            logger.warning(
                "no connector can connect: relay.yaml names no connector CA (connectors.ca) and no connectors.trustedCAs; run `sallyport relay init` for a new relay, or see docs/deployment.md"
            )
        }
        let chainPEM: String
        do {
            chainPEM = try String(contentsOfFile: config.tunnelCertificate, encoding: .utf8)
        } catch {
            throw StartError(description: "tunnel.certificate: cannot read \(config.tunnelCertificate): \(error.localizedDescription)")
        }
        let chain = try CertificateFacts.certificates(pem: chainPEM, source: config.tunnelCertificate)
        // Connectors trust the last certificate of the tunnel chain (the CA that `relay init` put there), or the
        // connector CA when the file holds only the leaf.
        let anchor = chain.count > 1 ? chain[chain.count - 1] : authority?.certificate ?? chain[0]
        let anchorPEM = try anchor.serializeAsPEM().pemString + "\n"
        let pin = try CertificateFacts.pin(of: anchor.publicKey)
        let leafName = try CertificateFacts(certificate: chain[0]).commonName
        let address = config.tunnelAddress.map { "\($0)" } ?? "\(leafName ?? ProcessInfo.processInfo.hostName):\(config.tunnelListen?.port ?? config.publicListen.port)"
        return Membership(
            store: store, authority: authority, relayCA: (anchorPEM, pin), policy: config.connectors, registry: registry, address: address, logger: logger
        )
    }
}

/// Sign-in states marked used in the store: single-use across the relays that share it.
struct StoreLedger: SignInLedger {
    let store: any RelayStore

    func use(_ key: String, until expiresAt: Date) async throws -> Bool {
        try await self.store.useOnce(key, until: expiresAt, now: Date())
    }
}
