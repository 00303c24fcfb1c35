public import Foundation
public import X509
import SwiftASN1

/// Reads certificate and key files and says, in words an operator can act on, what is wrong with them: the
/// file and config key, never a TLS library's internals. The relay and connector check their files with it
/// before handing them to TLS, and `sallyport config validate` reports every problem it finds.
public enum CredentialFiles {
    /// A file that cannot be used; the message names the config key, the file and the fix.
    public struct Problem: Error, CustomStringConvertible, Equatable {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// What a certificate is for.
    public enum Purpose: Sendable {
        /// A TLS server's (`serverAuth`): the relay's listeners.
        case server
        /// A TLS client's (`clientAuth`): a connector's.
        case client
    }

    /// The text of `path`, or why it cannot be read: missing, a directory, not readable by this user, empty.
    public static func read(_ path: String, role: String) throws(Problem) -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw Problem("\(role): \(path) does not exist: check the path (relative paths are relative to the config file)")
        }
        if isDirectory.boolValue { throw Problem("\(role): \(path) is a directory, not a file") }
        guard FileManager.default.isReadableFile(atPath: path), let data = FileManager.default.contents(atPath: path) else {
            throw Problem("\(role): \(path) is not readable by this user (\(Self.ownership(path))): run as the service's user, or let it read the file")
        }
        guard !data.isEmpty else { throw Problem("\(role): \(path) is empty") }
        guard let text = String(data: data, encoding: .utf8) else {
            throw Problem("\(role): \(path) is not a PEM file (binary content: a DER file converts with `openssl x509 -inform der -in FILE -out FILE.pem`)")
        }
        return text
    }

    /// The certificates of a PEM file, in order.
    public static func certificates(_ path: String, role: String) throws(Problem) -> [Certificate] {
        try Self.certificates(pem: try Self.read(path, role: role), path: path, role: role)
    }

    /// The certificates of `text`, the content of `path` (named in the problems), in order.
    public static func certificates(pem text: String, path: String, role: String) throws(Problem) -> [Certificate] {
        if !text.contains("-----BEGIN CERTIFICATE-----") {
            if text.contains("PRIVATE KEY-----") {
                throw Problem("\(role): \(path) holds a private key, not a certificate: are the certificate and key files swapped?")
            }
            throw Problem("\(role): \(path) holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        }
        let documents: [PEMDocument]
        do {
            documents = try PEMDocument.parseMultiple(pemString: text)
        } catch {
            throw Problem("\(role): \(path) is not valid PEM: a block is cut off or altered")
        }
        var certificates: [Certificate] = []
        for (index, document) in documents.enumerated() where document.discriminator == "CERTIFICATE" {
            do {
                certificates.append(try Certificate(pemDocument: document))
            } catch {
                throw Problem("\(role): \(path): certificate \(index + 1) of the file is malformed")
            }
        }
        return certificates
    }

    /// The private key of a PEM file. nil when the file holds a key of a kind this check does not read
    /// (TLS may still: the caller then leaves the judgement to it).
    public static func privateKey(_ path: String, role: String) throws(Problem) -> Certificate.PrivateKey? {
        try Self.privateKey(pem: try Self.read(path, role: role), path: path, role: role)
    }

    /// The private key in `text`, the content of `path` (named in the problems); nil as for ``privateKey(_:role:)``.
    public static func privateKey(pem text: String, path: String, role: String) throws(Problem) -> Certificate.PrivateKey? {
        if text.contains("ENCRYPTED") {
            throw Problem(
                "\(role): \(path) is an encrypted key: Sallyport reads unencrypted keys (mode 0600). Decrypt it with `openssl pkey -in FILE -out FILE.plain`"
            )
        }
        if !text.contains("PRIVATE KEY-----") {
            if text.contains("-----BEGIN CERTIFICATE-----") {
                throw Problem("\(role): \(path) holds a certificate, not a private key: are the certificate and key files swapped?")
            }
            throw Problem("\(role): \(path) holds no PEM private key (-----BEGIN PRIVATE KEY-----)")
        }
        return try? Certificate.PrivateKey(pemEncoded: text)
    }

    /// What is wrong with `chain` (leaf first) and `key` used together for `purpose`: errors stop the
    /// listener or connector from starting; warnings (expiry, names not covered) are logged.
    /// `names` are what clients dial (host names or IP addresses) and must be covered.
    public static func checkPair(
        chain: [Certificate], key: Certificate.PrivateKey?, certificate: (role: String, path: String), keyFile: (role: String, path: String),
        purpose: Purpose, names: [String] = [], checkExpiry: Bool = true, now: Date = Date()
    ) -> (errors: [String], warnings: [String]) {
        guard let leaf = chain.first else { return (["\(certificate.role): \(certificate.path) holds no certificate"], []) }
        var errors: [String] = []
        var warnings: [String] = []
        let subject = Self.commonName(of: leaf).map { "\"\($0)\"" } ?? "the certificate"
        if let key, key.publicKey != leaf.publicKey {
            errors.append(
                "\(keyFile.role): \(keyFile.path) is not the key of \(certificate.path) (\(certificate.role)): their public keys differ. Use the key the certificate was issued for, or a certificate issued for this key"
            )
        }
        let usage: ExtendedKeyUsage.Usage = purpose == .server ? .serverAuth : .clientAuth
        if let extended = try? leaf.extensions.extendedKeyUsage, !extended.contains(usage), !extended.contains(.any) {
            errors.append(
                "\(certificate.role): \(subject) in \(certificate.path) is not for TLS \(purpose == .server ? "servers" : "clients"): its extended key usage (\(extended)) lacks \(purpose == .server ? "serverAuth" : "clientAuth"). Issue one with it"
            )
        }
        if let usage = try? leaf.extensions.keyUsage, !usage.digitalSignature, !usage.keyEncipherment, !usage.keyAgreement {
            errors.append("\(certificate.role): \(subject) in \(certificate.path) may not be used for TLS: its key usage has neither digitalSignature nor keyEncipherment")
        }
        if !checkExpiry {
        } else if leaf.notValidAfter <= now {
            warnings.append(
                "\(certificate.role): \(subject) in \(certificate.path) expired on \(leaf.notValidAfter.formatted(.iso8601)): renew it; until then clients refuse to connect"
            )
        } else if leaf.notValidBefore > now {
            warnings.append(
                "\(certificate.role): \(subject) in \(certificate.path) is not valid before \(leaf.notValidBefore.formatted(.iso8601)): check this host's clock"
            )
        }
        let sans = (try? leaf.extensions.subjectAlternativeNames).flatMap { $0 }.map { Array($0) } ?? []
        for name in names where !Self.covers(sans, name) {
            let isAddress = IPAddressBytes.isIPAddress(name)
            warnings.append(
                "\(certificate.role): \(subject) in \(certificate.path) has no \(isAddress ? "IP address" : "DNS name") \(name) in its subject alternative names, and clients that connect to \(name) refuse it: issue one that lists \(isAddress ? "IP:" : "DNS:")\(name)"
            )
        }
        return (errors, warnings)
    }

    /// Whether the subject alternative names cover `name` (an IP address, a host name; `*.x` covers one label;
    /// a wildcard `name` needs the same wildcard).
    static func covers(_ sans: [GeneralName], _ name: String) -> Bool {
        if let address = try? IPAddressBytes.parse(name) {
            return sans.contains { if case .ipAddress(let bytes) = $0 { return Array(bytes.bytes) == address } else { return false } }
        }
        let host = name.lowercased()
        return sans.contains { entry in
            guard case .dnsName(let dns) = entry else { return false }
            let pattern = dns.lowercased()
            if pattern == host { return true }
            if host.hasPrefix("*.") { return false }
            guard pattern.hasPrefix("*."), let dot = host.firstIndex(of: ".") else { return false }
            return host[dot...] == pattern.dropFirst()
        }
    }

    static func commonName(of certificate: Certificate) -> String? {
        certificate.subject.flatMap { $0 }.first { $0.type == .RDNAttributeType.commonName }.map { "\($0.value)" }
    }

    static func ownership(_ path: String) -> String {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { return "cannot stat it" }
        let owner = attributes[.ownerAccountName] as? String ?? "?"
        let group = attributes[.groupOwnerAccountName] as? String ?? "?"
        let mode = (attributes[.posixPermissions] as? Int).map { String($0, radix: 8) } ?? "?"
        return "owner \(owner), group \(group), mode \(mode)"
    }
}
