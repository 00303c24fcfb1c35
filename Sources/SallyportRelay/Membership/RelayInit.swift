import Foundation
import SallyportPKI

/// `sallyport relay init DIR`: everything a relay needs to start, with safe permissions. The connector CA's key
/// stays in `DIR/ca` (0700/0600); nothing is overwritten.
public struct RelayInit: Sendable {
    /// A problem that stops init; says what to do.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// The directory to fill (created if missing; must not hold a relay.yaml).
    public var directory: String
    /// Names and addresses connectors use to reach the tunnel listener; the first is printed in commands.
    public var tunnelNames: [String]
    public var publicListen: String
    public var tunnelListen: String
    /// The administrator's public certificate chain and key; nil makes a self-signed one for trials.
    public var publicCertificate: (certificate: String, key: String)?
    /// Host names of the trial public certificate.
    public var trialPublicNames: [String]
    /// The state directory (registry database, admin socket); nil: `state` inside ``directory``.
    public var stateDirectory: String?

    public init(
        directory: String, tunnelNames: [String], publicListen: String = "0.0.0.0:443", tunnelListen: String = "0.0.0.0:8443",
        publicCertificate: (certificate: String, key: String)? = nil, trialPublicNames: [String] = ["localhost"], stateDirectory: String? = nil
    ) {
        self.stateDirectory = stateDirectory
        self.directory = directory
        self.tunnelNames = tunnelNames
        self.publicListen = publicListen
        self.tunnelListen = tunnelListen
        self.publicCertificate = publicCertificate
        self.trialPublicNames = trialPublicNames
    }

    /// What init made.
    public struct Outcome: Sendable {
        /// relay.yaml.
        public var configFile: String
        /// Every file written, with its mode.
        public var files: [(path: String, mode: Int)]
        /// The trial public CA (for curl's --cacert), when init made the public certificate.
        public var trialPublicCA: String?
        /// `host:port` connectors dial.
        public var tunnelAddress: String
    }

    func path(_ name: String) -> String { (self.directory as NSString).appendingPathComponent(name) }

    public func run() throws(Failure) -> Outcome {
        guard let first = self.tunnelNames.first else {
            throw Failure(description: "give at least one --name: the host name (or address) connectors use to reach this relay")
        }
        let configFile = self.path("relay.yaml")
        if FileManager.default.fileExists(atPath: configFile) {
            throw Failure(description: "\(configFile) exists: this directory already holds a relay. init never overwrites a relay's CA or keys; use an empty directory")
        }
        let port = self.tunnelListen.split(separator: ":").last.map(String.init) ?? "8443"
        let address = first.contains(":") ? "[\(first)]:\(port)" : "\(first):\(port)"
        var files: [(String, Int)] = []
        var trialCA: String?
        do {
            // The relay's user and group only. A directory that exists keeps its mode: the package made /etc/sallyport
            // and /var/lib/sallyport 0750 for the sallyport user, and the administrator may have chosen otherwise.
            for (name, mode) in [("", 0o750), ("ca", 0o700), ("tls", 0o750), ("secrets", 0o700), ("apps", 0o750), ("state", 0o750)] {
                let directory = name.isEmpty ? self.directory : name == "state" ? self.stateDirectory ?? self.path(name) : self.path(name)
                guard !FileManager.default.fileExists(atPath: directory) else { continue }
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                chmod(directory, mode_t(mode))
            }
            let ca = try CertificateAuthority.generate(commonName: "Sallyport connector CA (\(first))", organization: "Sallyport", validity: .seconds(10 * 365 * 86400))
            let ips = self.tunnelNames.filter(IPAddressBytes.isIPAddress)
            let dns = self.tunnelNames.filter { !IPAddressBytes.isIPAddress($0) }
            let tunnel = try ca.issueServer(commonName: first, dnsNames: dns, ipAddresses: ips, organization: "Sallyport", validity: .seconds(825 * 86400))
            files.append(try self.write("ca/connectors-ca.pem", ca.certificatePEM, mode: 0o644))
            files.append(try self.write("ca/connectors-ca.key", ca.privateKeyPEM, mode: 0o600))
            files.append(try self.write("tls/tunnel.pem", tunnel.chainPEM, mode: 0o644))
            files.append(try self.write("tls/tunnel.key", tunnel.privateKeyPEM, mode: 0o600))
            var publicComment = ""
            if let provided = self.publicCertificate {
                files.append(try self.write("tls/public.pem", try String(contentsOfFile: provided.certificate, encoding: .utf8), mode: 0o644))
                files.append(try self.write("tls/public.key", try String(contentsOfFile: provided.key, encoding: .utf8), mode: 0o600))
            } else {
                let trial = try CertificateAuthority.generate(commonName: "Sallyport trial public CA", validity: .seconds(90 * 86400))
                let ips = self.trialPublicNames.filter(IPAddressBytes.isIPAddress)
                let dns = self.trialPublicNames.filter { !IPAddressBytes.isIPAddress($0) }
                let leaf = try trial.issueServer(commonName: self.trialPublicNames.first ?? "localhost", dnsNames: dns, ipAddresses: ips, validity: .seconds(90 * 86400))
                files.append(try self.write("tls/public-trial-ca.pem", trial.certificatePEM, mode: 0o644))
                files.append(try self.write("tls/public.pem", leaf.chainPEM, mode: 0o644))
                files.append(try self.write("tls/public.key", leaf.privateKeyPEM, mode: 0o600))
                trialCA = self.path("tls/public-trial-ca.pem")
                publicComment = "   # a SELF-SIGNED TRIAL certificate: replace this pair with your own for the apps' host names"
            }
            // With port 0 the port is known only when the relay runs: it then uses the name and the bound port.
            let addressLine = port == "0" ? "" : "  address: \(address)         # what connectors dial; printed in registration commands\n"
            var secret = [UInt8](repeating: 0, count: 32)
            var generator = SystemRandomNumberGenerator()
            for index in secret.indices { secret[index] = generator.next() }
            files.append(try self.write("secrets/session.key", Data(secret).base64EncodedString() + "\n", mode: 0o600))
            files.append(
                try self.write(
                    "relay.yaml",
                    """
                    # Written by `sallyport relay init` on \(ISO8601DateFormatter().string(from: Date())).
                    # Relative paths are resolved against this file's directory. Reference: docs/configuration.md
                    public:
                      listen: \(self.publicListen)
                      certificates:
                        - certificate: tls/public.pem\(publicComment)
                          key: tls/public.key
                    tunnel:
                      listen: \(self.tunnelListen)
                    \(addressLine)  certificate: tls/tunnel.pem   # issued by the connector CA for: \(self.tunnelNames.joined(separator: ", "))
                      key: tls/tunnel.key
                    connectors:
                      ca:                           # issues connector certificates; its key never leaves this host
                        certificate: ca/connectors-ca.pem
                        key: ca/connectors-ca.key
                      certificateLifetime: 30d      # connectors renew by themselves when a third is left
                      inactiveAfter: 5m
                      removeAfter: 10d
                    state: \(self.stateDirectory ?? "state")                    # the registry database and the admin socket
                    apps: apps                      # one YAML file per published app
                    sessions:
                      keyFile: secrets/session.key

                    """,
                    mode: 0o640
                )
            )
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(description: "cannot initialise \(self.directory): \(error)")
        }
        return Outcome(configFile: configFile, files: files, trialPublicCA: trialCA, tunnelAddress: address)
    }

    private func write(_ name: String, _ text: String, mode: Int) throws -> (String, Int) {
        let path = self.path(name)
        try FileWriter.create(text, at: path, mode: mode_t(mode))
        return (path, mode)
    }
}
