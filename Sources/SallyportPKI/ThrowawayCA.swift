import Crypto
import Foundation
import SwiftASN1
import X509

/// A certificate authority kept in memory.
///
/// Meant for demos and tests only: the key never leaves memory unless the caller writes `privateKeyPEM`
/// somewhere, and nothing tracks the serial numbers it hands out.
public struct ThrowawayCA: Sendable {
    let certificate: Certificate
    let privateKey: Certificate.PrivateKey

    /// The CA certificate, PEM encoded: what a client or server trusts.
    public let certificatePEM: String
    /// The CA's private key, PKCS#8 PEM.
    public let privateKeyPEM: String

    private init(certificate: Certificate, privateKey: Certificate.PrivateKey) throws {
        self.certificate = certificate
        self.privateKey = privateKey
        self.certificatePEM = Self.pem(try certificate.serializeAsPEM())
        self.privateKeyPEM = Self.pem(try privateKey.serializeAsPEM())
    }

    /// Generates a self-signed CA with a fresh P-256 key.
    ///
    /// The certificate is valid from one hour ago (to tolerate clock skew) until `validity` from now.
    public static func generate(commonName: String, validity: Duration = .seconds(86400 * 30)) throws -> ThrowawayCA {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let name = try DistinguishedName {
            OrganizationName(Self.organization)
            CommonName(commonName)
        }
        let (notBefore, notAfter) = Self.validityWindow(validity)
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
            Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            SubjectKeyIdentifier(hash: key.publicKey)
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: key.publicKey,
            notValidBefore: notBefore,
            notValidAfter: notAfter,
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions,
            issuerPrivateKey: key
        )
        return try ThrowawayCA(certificate: certificate, privateKey: key)
    }

    /// A server certificate for the given DNS names and IP addresses (SAN), serverAuth EKU, signed by this CA.
    ///
    /// `dnsNames` may contain wildcards such as `*.localhost`. `ipAddresses` are IPv4 or IPv6 literals;
    /// an unparsable one throws ``PKIError/Code-swift.struct/invalidIPAddress``.
    public func issueServer(
        commonName: String,
        dnsNames: [String],
        ipAddresses: [String] = [],
        validity: Duration = .seconds(86400 * 7)
    ) throws -> IssuedCertificate {
        var names = dnsNames.map { GeneralName.dnsName($0) }
        for address in ipAddresses {
            names.append(.ipAddress(ASN1OctetString(contentBytes: try IPAddressBytes.parse(address)[...])))
        }
        return try issue(commonName: commonName, usage: .serverAuth, alternativeNames: names, validity: validity)
    }

    /// A client certificate (clientAuth EKU) whose subject CN is `commonName`.
    public func issueClient(commonName: String, validity: Duration = .seconds(86400 * 7)) throws -> IssuedCertificate {
        try issue(commonName: commonName, usage: .clientAuth, alternativeNames: [], validity: validity)
    }

    private func issue(
        commonName: String,
        usage: ExtendedKeyUsage.Usage,
        alternativeNames: [GeneralName],
        validity: Duration
    ) throws -> IssuedCertificate {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let subject = try DistinguishedName {
            OrganizationName(Self.organization)
            CommonName(commonName)
        }
        let authorityKeyIdentifier = try certificate.extensions.subjectKeyIdentifier?.keyIdentifier
        let (notBefore, notAfter) = Self.validityWindow(validity)
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try ExtendedKeyUsage([usage])
            SubjectKeyIdentifier(hash: key.publicKey)
            AuthorityKeyIdentifier(keyIdentifier: authorityKeyIdentifier)
            if !alternativeNames.isEmpty {
                SubjectAlternativeNames(alternativeNames)
            }
        }
        let leaf = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: key.publicKey,
            notValidBefore: notBefore,
            notValidAfter: notAfter,
            issuer: certificate.subject,
            subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions,
            issuerPrivateKey: privateKey
        )
        let leafPEM = Self.pem(try leaf.serializeAsPEM())
        return IssuedCertificate(
            certificatePEM: leafPEM,
            chainPEM: leafPEM + certificatePEM,
            privateKeyPEM: Self.pem(try key.serializeAsPEM())
        )
    }

    private static let organization = "Sallyport throwaway PKI"

    private static func validityWindow(_ validity: Duration) -> (Date, Date) {
        let now = Date()
        let (seconds, attoseconds) = validity.components
        let interval = TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
        return (now.addingTimeInterval(-3600), now.addingTimeInterval(interval))
    }

    /// PEM text ending in a newline, so documents can be concatenated into a chain.
    private static func pem(_ document: PEMDocument) -> String {
        let text = document.pemString
        return text.hasSuffix("\n") ? text : text + "\n"
    }
}

/// A leaf certificate and its key, PEM encoded.
public struct IssuedCertificate: Sendable {
    /// The leaf certificate only.
    public var certificatePEM: String
    /// The leaf followed by the issuing CA's certificate.
    public var chainPEM: String
    /// The leaf's private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), readable by
    /// swift-nio-ssl's `NIOSSLPrivateKey(file:format: .pem)`.
    public var privateKeyPEM: String
}
