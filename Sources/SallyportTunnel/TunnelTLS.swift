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
    public static func checkedPair(
        certificate: String, key: String, certificateRole: String, keyRole: String, purpose: CredentialFiles.Purpose, names: [String] = [],
        checkExpiry: Bool = false
    ) throws -> (chain: [NIOSSLCertificate], key: NIOSSLPrivateKey, warnings: [String]) {
        var errors: [String] = []
        var parsedChain: [Certificate] = []
        var parsedKey: Certificate.PrivateKey?
        do throws(CredentialFiles.Problem) { parsedChain = try CredentialFiles.certificates(certificate, role: certificateRole) } catch { errors.append(error.description) }
        do throws(CredentialFiles.Problem) { parsedKey = try CredentialFiles.privateKey(key, role: keyRole) } catch { errors.append(error.description) }
        var warnings: [String] = []
        if errors.isEmpty {
            let checked = CredentialFiles.checkPair(
                chain: parsedChain, key: parsedKey, certificate: (certificateRole, certificate), keyFile: (keyRole, key), purpose: purpose, names: names,
                checkExpiry: checkExpiry
            )
            errors += checked.errors
            warnings = checked.warnings
        }
        guard errors.isEmpty else { throw FileError(description: errors.joined(separator: "\n")) }
        return (try loadChain(certificate, role: certificateRole), try loadKey(key, role: keyRole), warnings)
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
        let text: String
        do throws(CredentialFiles.Problem) {
            text = try CredentialFiles.read(path, role: role)
            _ = try CredentialFiles.certificates(path, role: role)
        } catch {
            throw FileError(description: error.description)
        }
        guard let chain = try? NIOSSLCertificate.fromPEMBytes(Array(text.utf8)), !chain.isEmpty else {
            throw FileError(description: "\(role): \(path) cannot be used for TLS: check that it holds PEM certificates, leaf first")
        }
        return chain
    }

    /// Reads a PEM private key, naming the config key in the error (never the key's contents).
    public static func loadKey(_ path: String, role: String) throws -> NIOSSLPrivateKey {
        let text: String
        do throws(CredentialFiles.Problem) {
            text = try CredentialFiles.read(path, role: role)
            _ = try CredentialFiles.privateKey(path, role: role)
        } catch {
            throw FileError(description: error.description)
        }
        guard let key = try? NIOSSLPrivateKey(bytes: Array(text.utf8), format: .pem) else {
            throw FileError(description: "\(role): \(path) cannot be used for TLS: it must be an unencrypted PEM private key (RSA, EC P-256/P-384 or Ed25519)")
        }
        return key
    }
}
