import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A complete throwaway PKI for one relay and its connectors, written to a directory.
///
/// Files, all PEM:
/// - `public-ca.pem`: trust anchor for the relay's public HTTPS listener (give it to curl's `--cacert`).
/// - `public.pem`, `public.key`: chain (leaf + CA) for `*.localhost`, `localhost`, `127.0.0.1`, `::1`
///   and any extra public names.
/// - `tunnel-ca.pem`, `tunnel-ca.key`: one CA that signs both the relay's tunnel server certificate and connector
///   client certificates (the relay's connector CA, `connectors.ca`).
/// - `tunnel.pem`, `tunnel.key`: chain for the relay's tunnel listener (`localhost`, `127.0.0.1`, `::1`).
/// - `connector.pem`, `connector.key`: chain of a client certificate whose subject CN is the connector's name.
///
/// Key files are written with mode 0600. The public CA's key stays in memory only.
///
/// curl, OpenSSL and Python refuse a wildcard directly under a single-label name, so `*.localhost` does not
/// make them accept `hello.localhost`: pass the app host names a client will use in `extraPublicNames`.
public struct ThrowawayPKI: Sendable {
    /// The directory holding the files.
    public var directory: String
    private let tunnelAuthority: CertificateAuthority

    /// Generates both CAs and all leaf certificates and writes them into `directory`, creating it if missing.
    ///
    /// Existing files of the same names are replaced. A name in `extraPublicNames` that is an IP literal
    /// is added to the public certificate as an IP address SAN, anything else as a DNS name.
    public static func write(
        to directory: String,
        extraPublicNames: [String] = [],
        extraTunnelAddresses: [String] = [],
        connectorName: String = "connector-1"
    ) throws -> ThrowawayPKI {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw PKIError(.writeFailed, "cannot create directory \(directory): \(error)")
        }

        let publicAuthority = try CertificateAuthority.generate(commonName: "Sallyport throwaway public CA")
        let tunnelAuthority = try CertificateAuthority.generate(commonName: "Sallyport throwaway tunnel CA")
        let pki = ThrowawayPKI(directory: directory, tunnelAuthority: tunnelAuthority)

        let extraIPs = extraPublicNames.filter(IPAddressBytes.isIPAddress)
        let extraDNS = extraPublicNames.filter { !IPAddressBytes.isIPAddress($0) }
        let publicLeaf = try publicAuthority.issueServer(
            commonName: "localhost",
            dnsNames: Self.unique(["*.localhost", "localhost"] + extraDNS),
            ipAddresses: Self.unique(["127.0.0.1", "::1"] + extraIPs)
        )
        let tunnelLeaf = try tunnelAuthority.issueServer(
            commonName: "localhost",
            dnsNames: ["localhost"],
            ipAddresses: Self.unique(["127.0.0.1", "::1"] + extraTunnelAddresses)
        )

        try Self.writeFile(pki.publicCA, publicAuthority.certificatePEM, secret: false)
        try Self.writeFile(pki.publicCertificate, publicLeaf.chainPEM, secret: false)
        try Self.writeFile(pki.publicKey, publicLeaf.privateKeyPEM, secret: true)
        try Self.writeFile(pki.tunnelCA, tunnelAuthority.certificatePEM, secret: false)
        try Self.writeFile(pki.tunnelCAKey, tunnelAuthority.privateKeyPEM, secret: true)
        try Self.writeFile(pki.tunnelCertificate, tunnelLeaf.chainPEM, secret: false)
        try Self.writeFile(pki.tunnelKey, tunnelLeaf.privateKeyPEM, secret: true)
        _ = try pki.writeConnector(fileName: "connector", commonName: connectorName)
        return pki
    }

    /// `public-ca.pem`: the CA that signed the public certificate.
    public var publicCA: String { path("public-ca.pem") }
    /// `public.pem`: the public listener's chain.
    public var publicCertificate: String { path("public.pem") }
    /// `public.key`: the public listener's key.
    public var publicKey: String { path("public.key") }
    /// `tunnel-ca.pem`: the CA of the tunnel, trusted by both the relay and the connectors.
    public var tunnelCA: String { path("tunnel-ca.pem") }
    /// `tunnel-ca.key`: that CA's key, for a relay that issues connector certificates with it.
    public var tunnelCAKey: String { path("tunnel-ca.key") }
    /// `tunnel.pem`: the relay's tunnel listener chain.
    public var tunnelCertificate: String { path("tunnel.pem") }
    /// `tunnel.key`: the relay's tunnel listener key.
    public var tunnelKey: String { path("tunnel.key") }
    /// `connector.pem`: the first connector's client chain.
    public var connectorCertificate: String { path("connector.pem") }
    /// `connector.key`: the first connector's key.
    public var connectorKey: String { path("connector.key") }

    /// Issues another client certificate signed by the tunnel CA, written as `NAME.pem` / `NAME.key`.
    ///
    /// The subject CN is `name`. Returns the paths of the chain and key files.
    public func issueConnector(name: String) throws -> (certificate: String, key: String) {
        try writeConnector(fileName: name, commonName: name)
    }

    private func writeConnector(fileName: String, commonName: String) throws -> (certificate: String, key: String) {
        guard !fileName.isEmpty, !fileName.contains("/"), !fileName.hasPrefix(".") else {
            throw PKIError(.invalidName, "connector name '\(fileName)' cannot be used as a file name")
        }
        let issued = try tunnelAuthority.issueClient(commonName: commonName)
        let certificate = path(fileName + ".pem")
        let key = path(fileName + ".key")
        try Self.writeFile(certificate, issued.chainPEM, secret: false)
        try Self.writeFile(key, issued.privateKeyPEM, secret: true)
        return (certificate, key)
    }

    private func path(_ name: String) -> String {
        (directory as NSString).appendingPathComponent(name)
    }

    private static func unique(_ names: [String]) -> [String] {
        var seen = Set<String>()
        return names.filter { seen.insert($0).inserted }
    }

    /// Writes `contents`, replacing the file; secrets are 0600 from the first byte.
    private static func writeFile(_ path: String, _ contents: String, secret: Bool) throws {
        try FileWriter.replace(contents, at: path, mode: secret ? 0o600 : 0o644)
    }
}
