import NIOCore
import NIOSSL
import SallyportConfig
import SallyportPKI
import SallyportTLS

/// The public listener's TLS: TLS 1.2+, ALPN `h2` and `http/1.1`, and a certificate chosen per host by SNI.
enum PublicTLS {
    struct Entry {
        var hosts: [String]
        var chain: [NIOSSLCertificate]
        var key: NIOSSLPrivateKey
    }

    static func makeContext(_ certificates: [CertificateConfig]) throws -> NIOSSLContext {
        // Every entry is checked before any error is thrown: one start shows every problem.
        var problems: [String] = []
        var entries: [Entry] = []
        for (index, config) in certificates.enumerated() {
            do {
                let (chain, key, _) = try TLSFiles.checkedPair(
                    certificate: config.certificate, key: config.key, certificateRole: "public.certificates[\(index)].certificate",
                    keyRole: "public.certificates[\(index)].key", purpose: .server
                )
                entries.append(Entry(hosts: config.hosts.map { $0.lowercased() }, chain: chain, key: key))
            } catch {
                problems.append("\(error)")
            }
        }
        guard problems.isEmpty else { throw TLSFiles.FileError(description: problems.joined(separator: "\n")) }
        guard let fallback = entries.first(where: { $0.hosts.isEmpty }) ?? entries.first else {
            throw TLSFiles.FileError(description: "public.certificates: at least one certificate is required")
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
        return try TLSFiles.context(configuration, for: "public.certificates")
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
