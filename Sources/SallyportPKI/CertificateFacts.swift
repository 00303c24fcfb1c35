import Crypto
public import Foundation
import SwiftASN1
public import X509

/// What the relay and the connector need to know about one certificate, read with swift-certificates.
public struct CertificateFacts: Sendable, Equatable {
    /// Lowercase hex SHA-256 of the DER encoding: how the relay's registry recognises a connector certificate.
    public var fingerprint: String
    /// The serial number, lowercase hex.
    public var serial: String
    /// The subject's common name, if any.
    public var commonName: String?
    /// Start of validity.
    public var notBefore: Date
    /// End of validity.
    public var notAfter: Date
    /// The public key pin (``CertificateFacts/pin(of:)``).
    public var pin: String

    /// Reads a DER certificate.
    public init(der: [UInt8]) throws {
        let certificate: Certificate
        do {
            certificate = try Certificate(derEncoded: der)
        } catch {
            throw PKIError(.invalidCertificate, "not a DER certificate (\(error))")
        }
        self.init(certificate: certificate, der: der)
    }

    /// Facts of a parsed certificate.
    public init(certificate: Certificate) throws {
        self.init(certificate: certificate, der: try Self.der(of: certificate))
    }

    /// A certificate's DER encoding (what TLS sends and the fingerprint hashes).
    public static func der(of certificate: Certificate) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return serializer.serializedBytes
    }

    private init(certificate: Certificate, der: [UInt8]) {
        self.fingerprint = Self.hex(SHA256.hash(data: der))
        self.serial = Self.hex(certificate.serialNumber.bytes)
        self.commonName = certificate.subject.flatMap { $0 }.first { $0.type == .RDNAttributeType.commonName }.map { "\($0.value)" }
        self.notBefore = certificate.notValidBefore
        self.notAfter = certificate.notValidAfter
        self.pin = (try? Self.pin(of: certificate.publicKey)) ?? ""
    }

    /// Every certificate of a PEM bundle, in order; throws if there is none.
    public static func certificates(pem: String, source: String) throws -> [Certificate] {
        let documents: [PEMDocument]
        do {
            documents = try PEMDocument.parseMultiple(pemString: pem)
        } catch {
            throw PKIError(.invalidCertificate, "\(source) holds no readable PEM certificate (\(error))")
        }
        let certificates = try documents.filter { $0.discriminator == "CERTIFICATE" }.map { document in
            do {
                return try Certificate(pemDocument: document)
            } catch {
                throw PKIError(.invalidCertificate, "\(source) holds a malformed certificate (\(error))")
            }
        }
        guard !certificates.isEmpty else { throw PKIError(.invalidCertificate, "\(source) holds no PEM certificate") }
        return certificates
    }

    /// The pin of a public key: base64url (no padding) of the SHA-256 of its DER SubjectPublicKeyInfo, as
    /// kubeadm's discovery hash and HPKP pin a CA. A registration token carries the relay CA's pin.
    public static func pin(of key: Certificate.PublicKey) throws -> String {
        var serializer = DER.Serializer()
        try serializer.serialize(key)
        let digest = Data(SHA256.hash(data: serializer.serializedBytes))
        return digest.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Lowercase hex of `bytes` (fingerprints, serials, stored token hashes).
    public static func hex<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        bytes.map { byte in
            let text = String(byte, radix: 16)
            return byte < 16 ? "0" + text : text
        }.joined()
    }
}

/// A fresh P-256 key and a certificate signing request for it: what a connector sends to register or renew.
/// The key stays with the caller.
public struct KeyAndRequest: Sendable {
    /// The private key, PKCS#8 PEM.
    public var privateKeyPEM: String
    /// The request, PEM (`CERTIFICATE REQUEST`).
    public var requestPEM: String

    /// Generates a key and a request whose subject CN is `commonName` (the relay chooses the certificate's
    /// subject regardless).
    public static func generate(commonName: String) throws -> KeyAndRequest {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let subject = try DistinguishedName { CommonName(commonName) }
        let request = try CertificateSigningRequest(
            version: .v1, subject: subject, privateKey: key, attributes: CertificateSigningRequest.Attributes(), signatureAlgorithm: .ecdsaWithSHA256
        )
        return KeyAndRequest(
            privateKeyPEM: CertificateAuthority.pem(try key.serializeAsPEM()),
            requestPEM: CertificateAuthority.pem(try request.serializeAsPEM())
        )
    }

    /// Signs `message` with a P-256 key (PEM): ECDSA over SHA-256, DER.
    public static func sign(_ message: Data, privateKeyPEM: String) throws -> Data {
        do {
            return try P256.Signing.PrivateKey(pemRepresentation: privateKeyPEM).signature(for: message).derRepresentation
        } catch {
            throw PKIError(.invalidKey, "not a P-256 private key in PEM (\(error))")
        }
    }

    /// Whether `signature` (DER) over `message` was made by the key of `certificate` (P-256).
    public static func isValidSignature(_ signature: Data, for message: Data, by certificate: Certificate) -> Bool {
        guard let key = P256.Signing.PublicKey(certificate.publicKey), let parsed = try? P256.Signing.ECDSASignature(derRepresentation: signature) else {
            return false
        }
        return key.isValidSignature(parsed, for: message)
    }

    /// Reads a PEM request.
    public static func parseRequest(pem: String) throws -> CertificateSigningRequest {
        do {
            return try CertificateSigningRequest(pemEncoded: pem)
        } catch {
            throw PKIError(.invalidRequest, "not a PEM certificate signing request (\(error))")
        }
    }
}
