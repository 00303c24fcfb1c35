import Crypto
import Foundation
import SwiftASN1
public import X509

/// A certificate authority: the relay's connector CA, or a throwaway one for demos and tests.
///
/// It issues P-256 certificates: server certificates for TLS listeners, and client certificates either with a
/// fresh key (tests) or for the public key of a certificate signing request (connector registration and
/// renewal, where the key never leaves the connector).
public struct CertificateAuthority: Sendable {
    /// The CA certificate.
    public let certificate: Certificate
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

    /// A CA from its PEM certificate and key; throws if they do not belong together or it is not a CA.
    public init(certificatePEM: String, privateKeyPEM: String, source: String = "the CA") throws {
        let certificate: Certificate
        let key: Certificate.PrivateKey
        do {
            certificate = try Certificate(pemEncoded: certificatePEM)
        } catch {
            throw PKIError(.invalidCertificate, "\(source): the certificate is not a PEM certificate (\(error))")
        }
        do {
            key = try Certificate.PrivateKey(pemEncoded: privateKeyPEM)
        } catch {
            throw PKIError(.invalidCertificate, "\(source): the key is not an unencrypted PEM private key (\(error))")
        }
        guard key.publicKey == certificate.publicKey else {
            throw PKIError(.invalidCertificate, "\(source): the key does not belong to the certificate")
        }
        guard case .isCertificateAuthority? = try? certificate.extensions.basicConstraints else {
            throw PKIError(.invalidCertificate, "\(source): the certificate is not a CA certificate (basicConstraints CA:TRUE)")
        }
        try self.init(certificate: certificate, privateKey: key)
    }

    /// Reads a CA from a PEM certificate file and a PEM key file.
    public static func load(certificateFile: String, keyFile: String) throws -> CertificateAuthority {
        let certificatePEM: String
        let keyPEM: String
        do {
            certificatePEM = try String(contentsOfFile: certificateFile, encoding: .utf8)
        } catch {
            throw PKIError(.readFailed, "cannot read CA certificate \(certificateFile): \(error.localizedDescription)")
        }
        do {
            keyPEM = try String(contentsOfFile: keyFile, encoding: .utf8)
        } catch {
            throw PKIError(.readFailed, "cannot read CA key \(keyFile): \(error.localizedDescription)")
        }
        return try CertificateAuthority(certificatePEM: certificatePEM, privateKeyPEM: keyPEM, source: "\(certificateFile) with \(keyFile)")
    }

    /// Generates a self-signed CA with a fresh P-256 key.
    ///
    /// The certificate is valid from one hour ago (to tolerate clock skew) until `validity` from now.
    public static func generate(
        commonName: String, organization: String = CertificateAuthority.throwawayOrganization, validity: Duration = .seconds(86400 * 30)
    ) throws -> CertificateAuthority {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let name = try DistinguishedName {
            OrganizationName(organization)
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
        return try CertificateAuthority(certificate: certificate, privateKey: key)
    }

    /// A server certificate for the given DNS names and IP addresses (SAN), serverAuth EKU, signed by this CA.
    ///
    /// `dnsNames` may contain wildcards such as `*.localhost`. `ipAddresses` are IPv4 or IPv6 literals;
    /// an unparsable one throws ``PKIError/Code-swift.struct/invalidIPAddress``.
    public func issueServer(
        commonName: String,
        dnsNames: [String],
        ipAddresses: [String] = [],
        organization: String = CertificateAuthority.throwawayOrganization,
        validity: Duration = .seconds(86400 * 7)
    ) throws -> IssuedCertificate {
        var names = dnsNames.map { GeneralName.dnsName($0) }
        for address in ipAddresses {
            names.append(.ipAddress(ASN1OctetString(contentBytes: try IPAddressBytes.parse(address)[...])))
        }
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let leaf = try self.sign(
            publicKey: key.publicKey, commonName: commonName, organization: organization, usage: .serverAuth, alternativeNames: names, validity: validity
        )
        return try IssuedCertificate(leaf: leaf, authority: self, privateKeyPEM: Self.pem(key.serializeAsPEM()))
    }

    /// A client certificate (clientAuth EKU) whose subject CN is `commonName`, with a fresh key.
    public func issueClient(commonName: String, validity: Duration = .seconds(86400 * 7)) throws -> IssuedCertificate {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let leaf = try self.sign(
            publicKey: key.publicKey, commonName: commonName, organization: Self.throwawayOrganization, usage: .clientAuth, alternativeNames: [],
            validity: validity
        )
        return try IssuedCertificate(leaf: leaf, authority: self, privateKeyPEM: Self.pem(key.serializeAsPEM()))
    }

    /// A client certificate for the key of `request`, after checking the request's signature (proof that the
    /// requester holds the key). The subject is the CA's choice (`commonName`), never the request's.
    public func issueClient(
        for request: CertificateSigningRequest, commonName: String, organization: String, validity: Duration
    ) throws -> IssuedCertificate {
        guard request.publicKey.isValidSignature(request.signature, for: request) else {
            throw PKIError(.invalidRequest, "the certificate signing request's signature does not match its key")
        }
        let leaf = try self.sign(
            publicKey: request.publicKey, commonName: commonName, organization: organization, usage: .clientAuth, alternativeNames: [],
            validity: validity
        )
        return try IssuedCertificate(leaf: leaf, authority: self, privateKeyPEM: nil)
    }

    private func sign(
        publicKey: Certificate.PublicKey,
        commonName: String,
        organization: String,
        usage: ExtendedKeyUsage.Usage,
        alternativeNames: [GeneralName],
        validity: Duration
    ) throws -> Certificate {
        let subject = try DistinguishedName {
            OrganizationName(organization)
            CommonName(commonName)
        }
        let authorityKeyIdentifier = try certificate.extensions.subjectKeyIdentifier?.keyIdentifier
        let (notBefore, notAfter) = Self.validityWindow(validity)
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try ExtendedKeyUsage([usage])
            SubjectKeyIdentifier(hash: publicKey)
            AuthorityKeyIdentifier(keyIdentifier: authorityKeyIdentifier)
            if !alternativeNames.isEmpty {
                SubjectAlternativeNames(alternativeNames)
            }
        }
        return try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: publicKey,
            notValidBefore: notBefore,
            notValidAfter: min(notAfter, self.certificate.notValidAfter),
            issuer: certificate.subject,
            subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions,
            issuerPrivateKey: privateKey
        )
    }

    /// The organization name of throwaway certificates.
    public static let throwawayOrganization = "Sallyport throwaway PKI"

    /// Not before a tenth of the validity ago, at most an hour (clock skew between hosts, without making a
    /// short-lived certificate look much older than it is), not after `validity` from now. A negative
    /// `validity` makes a certificate that expired that long ago, after a day of validity (to test expiry).
    private static func validityWindow(_ validity: Duration) -> (Date, Date) {
        let now = Date()
        let (seconds, attoseconds) = validity.components
        let interval = TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
        if interval < 0 { return (now.addingTimeInterval(interval - 86400), now.addingTimeInterval(interval)) }
        return (now.addingTimeInterval(-min(3600, interval / 10)), now.addingTimeInterval(interval))
    }

    /// PEM text ending in a newline, so documents can be concatenated into a chain.
    static func pem(_ document: PEMDocument) -> String {
        let text = document.pemString
        return text.hasSuffix("\n") ? text : text + "\n"
    }
}

/// A leaf certificate (and its key, when the CA made the key), PEM encoded.
public struct IssuedCertificate: Sendable {
    /// The leaf certificate.
    public var certificate: Certificate
    /// The leaf certificate only.
    public var certificatePEM: String
    /// The leaf followed by the issuing CA's certificate.
    public var chainPEM: String
    /// The leaf's private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), readable by
    /// swift-nio-ssl's `NIOSSLPrivateKey(file:format: .pem)`; empty when the key was the requester's.
    public var privateKeyPEM: String

    init(leaf: Certificate, authority: CertificateAuthority, privateKeyPEM: String?) throws {
        self.certificate = leaf
        self.certificatePEM = CertificateAuthority.pem(try leaf.serializeAsPEM())
        self.chainPEM = self.certificatePEM + authority.certificatePEM
        self.privateKeyPEM = privateKeyPEM ?? ""
    }
}
