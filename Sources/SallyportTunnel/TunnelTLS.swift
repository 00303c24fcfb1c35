import NIOCore
public import NIOSSL
public import SallyportPKI
public import SallyportTLS
import X509

/// TLS set-up for the tunnel. Both ends authenticate: the relay demands a client certificate that chains to
/// its connector CA, and the connector verifies the relay's certificate and name.
public enum TunnelTLS {
    /// The relay's tunnel listener context. A client certificate is asked for and, when sent, must chain to
    /// one of `clientCAs` (the connector CA and any `connectors.trustedCAs`); a connection without one can
    /// only register (the listener checks).
    public static func relayContext(certificate: String, key: String, clientCAs: [(path: String, role: String)]) throws -> NIOSSLContext {
        let (chain, privateKey, _) = try TLSFiles.checkedPair(
            certificate: certificate, key: key, certificateRole: "tunnel.certificate", keyRole: "tunnel.key", purpose: .server
        )
        let roots = try clientCAs.flatMap { try TLSFiles.loadChain($0.path, role: $0.role) }
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
        return try TLSFiles.context(configuration, for: "tunnel.certificate and tunnel.key (\(certificate), \(key))")
    }

    /// The connector's client context.
    public static func connectorContext(certificate: String, key: String, relayCA: String?) throws -> NIOSSLContext {
        let (chain, privateKey, _) = try TLSFiles.checkedPair(certificate: certificate, key: key, certificateRole: "certificate", keyRole: "key", purpose: .client)
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.certificateChain = chain.map { .certificate($0) }
        configuration.privateKey = .privateKey(privateKey)
        configuration.certificateVerification = .fullVerification
        if let relayCA {
            configuration.trustRoots = .certificates(try TLSFiles.loadChain(relayCA, role: "relayCA"))
        }
        configuration.applicationProtocols = [TunnelProtocol.alpn]
        return try TLSFiles.context(configuration, for: "certificate and key (\(certificate), \(key))")
    }
}
