import Foundation
import SallyportPKI
import SallyportTesting
import SwiftASN1
import Testing
import X509

/// The throwaway PKI checked with an independent implementation (the openssl CLI) and parsed back with X509.
@Suite("Throwaway PKI")
struct PKITests {
    @Test("writes every file, keys private")
    func files() throws {
        let directory = try TestDirectory(prefix: "pki-files")
        let pki = try ThrowawayPKI.write(to: directory.file("pki"))
        let keys = [pki.publicKey, pki.tunnelKey, pki.tunnelCAKey, pki.connectorKey]
        let certificates = [pki.publicCA, pki.publicCertificate, pki.tunnelCA, pki.tunnelCertificate, pki.connectorCertificate]
        for path in keys {
            #expect(try permissions(path) == 0o600, "\(path)")
            #expect(try String(contentsOfFile: path, encoding: .utf8).hasPrefix("-----BEGIN PRIVATE KEY-----"))
        }
        for path in certificates {
            #expect(try String(contentsOfFile: path, encoding: .utf8).hasPrefix("-----BEGIN CERTIFICATE-----"), "\(path)")
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: pki.directory).sorted()
        #expect(
            names == ["connector.key", "connector.pem", "public-ca.pem", "public.key", "public.pem", "tunnel-ca.key", "tunnel-ca.pem", "tunnel.key", "tunnel.pem"])

        // Writing again over existing files keeps the keys private.
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: pki.publicKey)
        _ = try ThrowawayPKI.write(to: pki.directory)
        #expect(try permissions(pki.publicKey) == 0o600)
    }

    @Test("openssl accepts the chains for their purposes and names")
    func opensslVerifies() throws {
        let directory = try TestDirectory(prefix: "pki-verify")
        let pki = try ThrowawayPKI.write(
            to: directory.path,
            extraPublicNames: ["hello.localhost", "apps.example.test", "192.0.2.10"]
        )

        for (name, ip) in [("hello.localhost", "127.0.0.1"), ("localhost", "::1"), ("apps.example.test", "192.0.2.10")] {
            let result = try openssl([
                "verify", "-CAfile", pki.publicCA, "-purpose", "sslserver",
                "-verify_hostname", name, "-verify_ip", ip, pki.publicCertificate,
            ])
            #expect(result.status == 0, "\(name): \(result.output)")
        }
        let wrongName = try openssl(["verify", "-CAfile", pki.publicCA, "-verify_hostname", "example.com", pki.publicCertificate])
        #expect(wrongName.status != 0)

        let tunnel = try openssl([
            "verify", "-CAfile", pki.tunnelCA, "-purpose", "sslserver", "-verify_hostname", "localhost", pki.tunnelCertificate,
        ])
        #expect(tunnel.status == 0, "\(tunnel.output)")
        let connector = try openssl(["verify", "-CAfile", pki.tunnelCA, "-purpose", "sslclient", pki.connectorCertificate])
        #expect(connector.status == 0, "\(connector.output)")
        let crossed = try openssl(["verify", "-CAfile", pki.publicCA, pki.connectorCertificate])
        #expect(crossed.status != 0, "the public CA must not vouch for connectors")

        // Each key matches its certificate.
        for (certificate, key) in [
            (pki.publicCertificate, pki.publicKey), (pki.tunnelCertificate, pki.tunnelKey),
            (pki.connectorCertificate, pki.connectorKey),
        ] {
            let fromCertificate = try openssl(["x509", "-in", certificate, "-noout", "-pubkey"])
            let fromKey = try openssl(["pkey", "-in", key, "-pubout"])
            #expect(fromKey.status == 0, "\(fromKey.output)")
            #expect(fromCertificate.output == fromKey.output, "\(key) does not match \(certificate)")
        }
    }

    @Test("curl trusts the public certificate for an app host name over real TLS")
    func curlOverTLS() async throws {
        let directory = try TestDirectory(prefix: "pki-tls")
        let pki = try ThrowawayPKI.write(to: directory.path, extraPublicNames: ["hello.localhost"])
        let port = try FreePort.next()
        let server = try ChildProcess.launch(
            "openssl",
            ["s_server", "-accept", "127.0.0.1:\(port)", "-cert", pki.publicCertificate, "-key", pki.publicKey, "-www", "-quiet"],
            logFile: directory.file("s_server.log")
        )
        do {
            try await Wait.forPort(port, timeout: .seconds(10))
        } catch {
            Issue.record("openssl s_server did not listen (running: \(server.isRunning)): \(server.log())")
            throw error
        }

        let trusted = try await Curl.run("https://hello.localhost:\(port)/", caFile: pki.publicCA)
        #expect(trusted.exitCode == 0, "\(trusted.stderr)")
        #expect(trusted.status == 200)
        let byAddress = try await Curl.run("https://127.0.0.1:\(port)/", caFile: pki.publicCA)
        #expect(byAddress.status == 200, "\(byAddress.stderr)")
        let untrusted = try await Curl.run("https://hello.localhost:\(port)/", caFile: pki.tunnelCA)
        #expect(untrusted.exitCode == 60, "\(untrusted.stderr)")  // peer certificate cannot be authenticated
        await server.terminate()
    }

    @Test("connector certificates carry clientAuth and the connector's name")
    func connectorCertificates() throws {
        let directory = try TestDirectory(prefix: "pki-connector")
        let pki = try ThrowawayPKI.write(to: directory.path, connectorName: "edge-7")

        let first = try leaf(pki.connectorCertificate)
        #expect(try first.extensions.extendedKeyUsage?.contains(.clientAuth) == true)
        #expect(try first.extensions.extendedKeyUsage?.contains(.serverAuth) == false)
        #expect(commonName(first) == "edge-7")
        #expect(try first.extensions.basicConstraints == .notCertificateAuthority)

        let second = try pki.issueConnector(name: "connector-2")
        #expect(second.certificate == directory.file("connector-2.pem"))
        #expect(second.key == directory.file("connector-2.key"))
        #expect(try permissions(second.key) == 0o600)
        let issued = try leaf(second.certificate)
        #expect(commonName(issued) == "connector-2")
        #expect(try issued.extensions.extendedKeyUsage?.contains(.clientAuth) == true)
        let verified = try openssl(["verify", "-CAfile", pki.tunnelCA, "-purpose", "sslclient", second.certificate])
        #expect(verified.status == 0, "\(verified.output)")

        #expect(throws: PKIError.self) { try pki.issueConnector(name: "../escape") }
    }

    @Test("CA and server certificates have the expected extensions")
    func extensions() throws {
        let ca = try CertificateAuthority.generate(commonName: "Test CA", validity: .seconds(3600))
        let caCertificate = try Certificate(pemEncoded: ca.certificatePEM)
        let basic = try #require(caCertificate.extensions[oid: .X509ExtensionID.basicConstraints])
        #expect(basic.critical)
        #expect(try caCertificate.extensions.basicConstraints == .isCertificateAuthority(maxPathLength: nil))
        let usage = try #require(try caCertificate.extensions.keyUsage)
        #expect(usage.keyCertSign && usage.cRLSign)
        #expect(try caCertificate.extensions.subjectKeyIdentifier != nil)
        #expect(caCertificate.notValidAfter.timeIntervalSinceNow < 3600 + 60)

        let server = try ca.issueServer(commonName: "svc", dnsNames: ["*.localhost", "localhost"], ipAddresses: ["127.0.0.1", "::1"])
        let documents = try PEMDocument.parseMultiple(pemString: server.chainPEM)
        #expect(documents.count == 2)
        let serverCertificate = try Certificate(pemEncoded: server.certificatePEM)
        #expect(serverCertificate.issuer == caCertificate.subject)
        let names = try #require(try serverCertificate.extensions.subjectAlternativeNames)
        #expect(names.contains(.dnsName("*.localhost")))
        #expect(names.contains(.ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))))
        #expect(names.contains(.ipAddress(ASN1OctetString(contentBytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]))))
        #expect(try serverCertificate.extensions.extendedKeyUsage?.contains(.serverAuth) == true)

        #expect(throws: PKIError.self) { try ca.issueServer(commonName: "bad", dnsNames: [], ipAddresses: ["300.1.2.3"]) }
    }
}

private func permissions(_ path: String) throws -> Int {
    let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
    return (mode ?? 0) & 0o777
}

/// The first certificate of a PEM file.
private func leaf(_ path: String) throws -> Certificate {
    let pem = try String(contentsOfFile: path, encoding: .utf8)
    let first = try #require(try PEMDocument.parseMultiple(pemString: pem).first)
    return try Certificate(pemDocument: first)
}

private func commonName(_ certificate: Certificate) -> String? {
    for relativeName in certificate.subject {
        for attribute in relativeName where attribute.type == .RDNAttributeType.commonName {
            return String(describing: attribute.value)
        }
    }
    return nil
}

/// Runs the openssl CLI, returning its exit status and combined output.
private func openssl(_ arguments: [String]) throws -> (status: Int32, output: String) {
    try Command.run("/usr/bin/openssl", arguments)
}
