public import NIOSSL
public import SallyportPKI
import X509

/// Certificates and keys read from files into TLS: one place for the edge's certificates, backends' CAs and the
/// tunnel's credentials, so each failure names the file, the configuration key and the fix, never the TLS
/// library's internals.
public enum TLSFiles {
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
    public static func chain(pem text: String, path: String, role: String) throws(CredentialFiles.Problem) -> [NIOSSLCertificate] {
        guard let chain = try? NIOSSLCertificate.fromPEMBytes(Array(text.utf8)), !chain.isEmpty else {
            throw CredentialFiles.Problem("\(role): \(path) cannot be used for TLS: check that it holds PEM certificates, leaf first")
        }
        return chain
    }

    /// The key as TLS takes it, from text ``CredentialFiles`` has already judged.
    public static func key(pem text: String, path: String, role: String) throws(CredentialFiles.Problem) -> NIOSSLPrivateKey {
        guard let key = try? NIOSSLPrivateKey(bytes: Array(text.utf8), format: .pem) else {
            throw CredentialFiles.Problem("\(role): \(path) cannot be used for TLS: it must be an unencrypted PEM private key (RSA, EC P-256/P-384 or Ed25519)")
        }
        return key
    }
}
