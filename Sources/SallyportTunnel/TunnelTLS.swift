import NIOCore
public import NIOSSL

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

    /// The relay's tunnel listener context. A client certificate is asked for and, when sent, must chain to
    /// one of `clientCAs` (the connector CA and any `connectors.trustedCAs`); a connection without one can
    /// only register (the listener checks).
    public static func relayContext(certificate: String, key: String, clientCAs: [(path: String, role: String)]) throws -> NIOSSLContext {
        let chain = try loadChain(certificate, role: "tunnel.certificate")
        let privateKey = try loadKey(key, role: "tunnel.key")
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
        return try NIOSSLContext(configuration: configuration)
    }

    /// The connector's client context.
    public static func connectorContext(certificate: String, key: String, relayCA: String?) throws -> NIOSSLContext {
        let chain = try loadChain(certificate, role: "certificate")
        let privateKey = try loadKey(key, role: "key")
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.certificateChain = chain.map { .certificate($0) }
        configuration.privateKey = .privateKey(privateKey)
        configuration.certificateVerification = .fullVerification
        if let relayCA {
            configuration.trustRoots = .certificates(try loadChain(relayCA, role: "relayCA"))
        }
        configuration.applicationProtocols = [TunnelProtocol.alpn]
        return try NIOSSLContext(configuration: configuration)
    }

    /// Reads a PEM certificate bundle, naming the config key in the error.
    public static func loadChain(_ path: String, role: String) throws -> [NIOSSLCertificate] {
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(path)
            guard !chain.isEmpty else {
                throw FileError(description: "\(role): \(path) contains no PEM certificate")
            }
            return chain
        } catch let error as FileError {
            throw error
        } catch {
            throw FileError(description: "\(role): cannot read certificate file \(path): \(error). Check the path and that it holds PEM certificates.")
        }
    }

    /// Reads a PEM private key, naming the config key in the error (never the key's contents).
    public static func loadKey(_ path: String, role: String) throws -> NIOSSLPrivateKey {
        do {
            return try NIOSSLPrivateKey(file: path, format: .pem)
        } catch {
            throw FileError(description: "\(role): cannot read private key file \(path): \(error). Check the path, its permissions, and that it is an unencrypted PEM key.")
        }
    }
}
