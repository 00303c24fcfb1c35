import NIOCore
import NIOSSL
import SallyportConfig
import SallyportTunnel

/// The public listener's TLS: TLS 1.2+, ALPN `h2` and `http/1.1`, and a certificate chosen per host by SNI.
enum PublicTLS {
    struct Entry {
        var hosts: [String]
        var chain: [NIOSSLCertificate]
        var key: NIOSSLPrivateKey
    }

    static func makeContext(_ certificates: [CertificateConfig]) throws -> NIOSSLContext {
        let entries = try certificates.enumerated().map { index, config in
            Entry(
                hosts: config.hosts.map { $0.lowercased() },
                chain: try TunnelTLS.loadChain(config.certificate, role: "public.certificates[\(index)].certificate"),
                key: try TunnelTLS.loadKey(config.key, role: "public.certificates[\(index)].key")
            )
        }
        guard let fallback = entries.first(where: { $0.hosts.isEmpty }) ?? entries.first else {
            throw TunnelTLS.FileError(description: "public.certificates: at least one certificate is required")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: fallback.chain.map { .certificate($0) },
            privateKey: .privateKey(fallback.key)
        )
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = ["h2", "http/1.1"]
        if entries.count > 1 {
            let table = entries
            configuration.sslContextCallback = { values, promise in
                var override = NIOSSLContextConfigurationOverride()
                if let name = values.serverHostname?.lowercased(), let entry = Self.match(name, in: table) {
                    override.certificateChain = entry.chain.map { .certificate($0) }
                    override.privateKey = .privateKey(entry.key)
                }
                promise.succeed(override)
            }
        }
        return try NIOSSLContext(configuration: configuration)
    }

    /// Exact names first, then the longest matching wildcard (`*.example.com` covers one label).
    static func match(_ name: String, in entries: [Entry]) -> Entry? {
        if let exact = entries.first(where: { $0.hosts.contains(name) }) { return exact }
        guard let dot = name.firstIndex(of: ".") else { return nil }
        let wildcard = "*" + name[dot...]
        return entries.first { $0.hosts.contains(wildcard) }
    }
}

extension PublicTLS.Entry: @unchecked Sendable {}
