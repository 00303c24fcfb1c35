import NIOCore
public import NIOSSL
public import SallyportPKI
import X509

/// TLS set-up for the tunnel. Both ends authenticate: the relay demands a client certificate that chains to
/// its connector CA, and the connector verifies the relay's certificate and name.
public enum TunnelTLS {
    /// A problem with certificate or key files; says which file and why.
    public struct FileError: Error, CustomStringConvertible {
        /// What failed, naming the file and the fix.
        public var description: String
        /// Creates an error.
        public init(description: String) { self.description = description }
    }

    /// A certificate chain and its key, checked together for `purpose` (``CredentialFiles``): the errors are
    /// thrown, all at once; the warnings (names `names` not covered; expiry with `checkExpiry`) are returned.
    /// Each file is read once.
    public static func checkedPair(
        certificate: String, key: String, certificateRole: String, keyRole: String, purpose: CredentialFiles.Purpose, names: [String] = [],
        checkExpiry: Bool = false
    ) throws -> (chain: [NIOSSLCertificate], key: NIOSSLPrivateKey, warnings: [String]) {
        var errors: [String] = []
        var chain: (text: String, parsed: [Certificate])?
        var privateKey: (text: String, parsed: Certificate.PrivateKey?)?
        do throws(CredentialFiles.Problem) {
            let text = try CredentialFiles.read(certificate, role: certificateRole)
            chain = (text, try CredentialFiles.certificates(pem: text, path: certificate, role: certificateRole))
        } catch {
            errors.append(error.description)
        }
        do throws(CredentialFiles.Problem) {
            let text = try CredentialFiles.read(key, role: keyRole)
            privateKey = (text, try CredentialFiles.privateKey(pem: text, path: key, role: keyRole))
        } catch {
            errors.append(error.description)
        }
        guard let chain, let privateKey else { throw FileError(description: errors.joined(separator: "\n")) }
        let checked = CredentialFiles.checkPair(
            chain: chain.parsed, key: privateKey.parsed, certificate: (certificateRole, certificate), keyFile: (keyRole, key), purpose: purpose,
            names: names, checkExpiry: checkExpiry
        )
        guard checked.errors.isEmpty else { throw FileError(description: checked.errors.joined(separator: "\n")) }
        do throws(CredentialFiles.Problem) {
            return (
                try Self.chain(pem: chain.text, path: certificate, role: certificateRole), try Self.key(pem: privateKey.text, path: key, role: keyRole),
                checked.warnings
            )
        } catch {
            throw FileError(description: error.description)
        }
    }

    /// The relay's tunnel listener context. A client certificate is asked for and, when sent, must chain to
    /// one of `clientCAs` (the connector CA and any `connectors.trustedCAs`); a connection without one can
    /// only register (the listener checks).
    public static func relayContext(certificate: String, key: String, clientCAs: [(path: String, role: String)]) throws -> NIOSSLContext {
        let (chain, privateKey, _) = try checkedPair(
            certificate: certificate, key: key, certificateRole: "tunnel.certificate", keyRole: "tunnel.key", purpose: .server
        )
        let roots = try clientCAs.flatMap { try loadChain($0.path, role: $0.role) }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) },
            privateKey: .privateKey(privateKey)
        )
        configuration.minimumTLSVersion = .tlsv12
        configuration.certificateVerification = .optionalVerification
        configuration.trustRoots = .certificates(roots)
        configuration.sendCANameList = false
        // HTTP/1.1: registration, by connectors that have no certificate yet.
        configuration.applicationProtocols = [TunnelProtocol.alpn, "http/1.1"]
        return try context(configuration, for: "tunnel.certificate and tunnel.key (\(certificate), \(key))")
    }

    /// The connector's client context.
    public static func connectorContext(certificate: String, key: String, relayCA: String?) throws -> NIOSSLContext {
        let (chain, privateKey, _) = try checkedPair(certificate: certificate, key: key, certificateRole: "certificate", keyRole: "key", purpose: .client)
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.certificateChain = chain.map { .certificate($0) }
        configuration.privateKey = .privateKey(privateKey)
        configuration.certificateVerification = .fullVerification
        if let relayCA {
            configuration.trustRoots = .certificates(try loadChain(relayCA, role: "relayCA"))
        }
        configuration.applicationProtocols = [TunnelProtocol.alpn]
        return try context(configuration, for: "certificate and key (\(certificate), \(key))")
    }

    /// The TLS context of `configuration`; a failure names `what` was being set up, not the TLS library's internals.
    public static func context(_ configuration: TLSConfiguration, for what: String) throws -> NIOSSLContext {
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw FileError(description: "\(what): TLS cannot use them together (a key that does not match, or an unsupported key type)")
        }
    }

    /// Reads a PEM certificate bundle, naming the config key in the error.
    public static func loadChain(_ path: String, role: String) throws -> [NIOSSLCertificate] {
        do throws(CredentialFiles.Problem) {
            let text = try CredentialFiles.read(path, role: role)
            _ = try CredentialFiles.certificates(pem: text, path: path, role: role)
            return try Self.chain(pem: text, path: path, role: role)
        } catch {
            throw FileError(description: error.description)
        }
    }

    /// Reads a PEM private key, naming the config key in the error (never the key's contents).
    public static func loadKey(_ path: String, role: String) throws -> NIOSSLPrivateKey {
        do throws(CredentialFiles.Problem) {
            let text = try CredentialFiles.read(path, role: role)
            _ = try CredentialFiles.privateKey(pem: text, path: path, role: role)
            return try Self.key(pem: text, path: path, role: role)
        } catch {
            throw FileError(description: error.description)
        }
    }

    /// The chain as TLS takes it, from text ``CredentialFiles`` has already judged.
    static func chain(pem text: String, path: String, role: String) throws(CredentialFiles.Problem) -> [NIOSSLCertificate] {
        guard let chain = try? NIOSSLCertificate.fromPEMBytes(Array(text.utf8)), !chain.isEmpty else {
            throw CredentialFiles.Problem("\(role): \(path) cannot be used for TLS: check that it holds PEM certificates, leaf first")
        }
        return chain
    }

    /// The key as TLS takes it, from text ``CredentialFiles`` has already judged.
    static func key(pem text: String, path: String, role: String) throws(CredentialFiles.Problem) -> NIOSSLPrivateKey {
        guard let key = try? NIOSSLPrivateKey(bytes: Array(text.utf8), format: .pem) else {
            throw CredentialFiles.Problem("\(role): \(path) cannot be used for TLS: it must be an unencrypted PEM private key (RSA, EC P-256/P-384 or Ed25519)")
        }
        return key
    }
}
