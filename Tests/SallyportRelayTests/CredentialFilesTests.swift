import Foundation
import SallyportPKI
import SallyportTunnel
import Testing
import SallyportTLS

/// Certificate and key files: each way they go wrong gets a message that names the key and file and says what
/// to do, never a TLS library's internals.
@Suite("Certificate and key files")
final class CredentialFilesTests {
    let directory: String
    let ca: CertificateAuthority

    init() throws {
        self.directory = NSTemporaryDirectory() + "sallyport-credentials-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        self.ca = try CertificateAuthority.generate(commonName: "Test CA")
    }

    /// Each test's files go with it.
    deinit { try? FileManager.default.removeItem(atPath: self.directory) }

    func write(_ name: String, _ text: String) throws -> String {
        let path = self.directory + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A server certificate and key written as files.
    func server(_ names: [String] = ["relay.example.test"], ips: [String] = []) throws -> (certificate: String, key: String) {
        let issued = try self.ca.issueServer(commonName: names.first ?? "relay", dnsNames: names, ipAddresses: ips)
        let tag = UUID().uuidString.prefix(6)
        return (try self.write("server-\(tag).pem", issued.chainPEM), try self.write("server-\(tag).key", issued.privateKeyPEM))
    }

    func problem(_ certificate: String, _ key: String, purpose: CredentialFiles.Purpose = .server, names: [String] = []) -> String {
        do {
            let checked = try TLSFiles.checkedPair(
                certificate: certificate, key: key, certificateRole: "tunnel.certificate", keyRole: "tunnel.key", purpose: purpose, names: names, checkExpiry: true
            )
            return checked.warnings.joined(separator: "\n")
        } catch {
            return "\(error)"
        }
    }

    static func saysNothingInternal(_ message: String) -> Bool {
        !message.lowercased().contains("boringssl") && !message.contains("NIOSSL") && !message.contains("/Sources/") && !message.contains("error:")
    }

    @Test("A good pair passes; a key that is not the certificate's names both files")
    func mismatch() throws {
        let good = try self.server()
        let other = try self.server()
        #expect(self.problem(good.certificate, good.key).isEmpty)
        let message = self.problem(good.certificate, other.key)
        #expect(message.contains("tunnel.key: \(other.key) is not the key of \(good.certificate)"), "\(message)")
        #expect(message.contains("Use the key the certificate was issued for"))
        #expect(Self.saysNothingInternal(message), "\(message)")
    }

    @Test("Swapped files, an encrypted key, a missing file, a directory, a non-PEM file: each says what it is")
    func unreadable() throws {
        let good = try self.server()
        #expect(self.problem(good.key, good.certificate).contains("holds a private key, not a certificate: are the certificate and key files swapped?"))
        let encrypted = try self.write("encrypted.key", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n")
        #expect(self.problem(good.certificate, encrypted).contains("is an encrypted key: Sallyport reads unencrypted keys"))
        #expect(self.problem(self.directory + "/missing.pem", good.key).contains("missing.pem does not exist"))
        #expect(self.problem(self.directory, good.key).contains("is a directory, not a file"))
        let der = self.directory + "/binary.der"
        try Data([0x30, 0x82, 0x01, 0xFF, 0x00, 0xC3]).write(to: URL(fileURLWithPath: der))
        let binary = self.problem(der, good.key)
        #expect(binary.contains("is not a PEM file") && binary.contains("openssl x509 -inform der"), "\(binary)")
        let garbage = try self.write("garbage.pem", "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        let malformed = self.problem(garbage, good.key)
        #expect(malformed.contains("garbage.pem") && Self.saysNothingInternal(malformed), "\(malformed)")
    }

    @Test("Both files wrong at once: both problems in one message")
    func everyProblemAtOnce() throws {
        let message = self.problem(self.directory + "/nope.pem", self.directory + "/nope.key")
        #expect(message.contains("tunnel.certificate: ") && message.contains("nope.pem does not exist"))
        #expect(message.contains("tunnel.key: ") && message.contains("nope.key does not exist"), "\(message)")
    }

    @Test("A client certificate used for a server says its extended key usage lacks serverAuth")
    func wrongUsage() throws {
        let client = try self.ca.issueClient(commonName: "connector-1")
        let certificate = try self.write("client.pem", client.chainPEM)
        let key = try self.write("client.key", client.privateKeyPEM)
        let message = self.problem(certificate, key, purpose: .server)
        #expect(message.contains("is not for TLS servers") && message.contains("lacks serverAuth"), "\(message)")
        #expect(self.problem(certificate, key, purpose: .client).isEmpty)
    }

    @Test("Expired, not yet valid, and a name or IP address the certificate does not list are warnings that say what to do")
    func warnings() throws {
        let pair = try self.server(["relay.example.test"], ips: ["10.1.2.3"])
        let chain = try CredentialFiles.certificates(pair.certificate, role: "tunnel.certificate")
        let key = try CredentialFiles.privateKey(pair.key, role: "tunnel.key")
        func warnings(names: [String] = [], now: Date = Date()) -> [String] {
            CredentialFiles.checkPair(
                chain: chain, key: key, certificate: ("tunnel.certificate", pair.certificate), keyFile: ("tunnel.key", pair.key), purpose: .server,
                names: names, now: now
            ).warnings
        }
        #expect(warnings(names: ["relay.example.test", "10.1.2.3"]).isEmpty)
        let expired = warnings(now: Date().addingTimeInterval(400 * 86400))
        #expect(expired.count == 1 && expired[0].contains("expired on") && expired[0].contains("renew it"), "\(expired)")
        let early = warnings(now: Date().addingTimeInterval(-86400))
        #expect(early.count == 1 && early[0].contains("check this host's clock"), "\(early)")
        let missing = warnings(names: ["10.9.9.9", "other.example.test"])
        #expect(missing.contains { $0.contains("has no IP address 10.9.9.9") && $0.contains("IP:10.9.9.9") }, "\(missing)")
        #expect(missing.contains { $0.contains("has no DNS name other.example.test") }, "\(missing)")
        let wildcard = try self.server(["*.apps.example.test"])
        let wildChain = try CredentialFiles.certificates(wildcard.certificate, role: "c")
        let covered = CredentialFiles.checkPair(
            chain: wildChain, key: nil, certificate: ("c", wildcard.certificate), keyFile: ("k", wildcard.key), purpose: .server,
            names: ["*.apps.example.test", "wiki.apps.example.test", "deep.wiki.apps.example.test"]
        ).warnings
        #expect(covered.count == 1 && covered[0].contains("deep.wiki.apps.example.test"), "\(covered)")
    }
}
