public import Foundation
import SallyportHTTP

/// Connector registration: the one-time token and the messages of the registration exchange.
/// See docs/tunnel-protocol.md, "Registration".
public enum Registration {
    /// Path on the tunnel listener that serves the relay's tunnel CA certificate (PEM), to anyone: the
    /// connector checks it against the token's pin before it trusts it.
    public static let caPath = "/.sallyport/v1/ca"
    /// Path on the tunnel listener where a connector registers (POST ``Request``, answer ``Response`` or
    /// ``Refusal``), over TLS verified against that CA.
    public static let registerPath = "/.sallyport/v1/register"

    /// POST body of a registration.
    public struct Request: Sendable, Codable, Equatable {
        /// The token's id.
        public var tokenID: String
        /// The token's secret.
        public var secret: String
        /// The connector's name as the administrator gave it (or its host name).
        public var name: String
        /// The connector's host name.
        public var host: String
        /// The group the administrator expects it to join, if they said; refused if the token's differs.
        public var group: String?
        /// A PEM certificate signing request for the key the connector generated.
        public var certificateRequest: String
        /// The connector's software version.
        public var software: String
        /// `register --force` on a host that was registered: the registration this one replaces, which the relay
        /// then removes. Optional; older relays ignore it.
        public var replaces: Replacement?

        /// Creates a request.
        public init(tokenID: String, secret: String, name: String, host: String, group: String?, certificateRequest: String, software: String) {
            self.tokenID = tokenID
            self.secret = secret
            self.name = name
            self.host = host
            self.group = group
            self.certificateRequest = certificateRequest
            self.software = software
        }
    }

    /// Proof that the registering host holds the key of an earlier registration: that registration's
    /// certificate, and the old key's signature over ``message(tokenID:certificateRequest:)``.
    public struct Replacement: Sendable, Codable, Equatable {
        /// The old certificate, PEM.
        public var certificate: String
        /// ECDSA (P-256, SHA-256) signature, DER, base64.
        public var signature: String

        public init(certificate: String, signature: String) {
            self.certificate = certificate
            self.signature = signature
        }

        /// What the old key signs: bound to this token and this new key, so it cannot be replayed for another.
        public static func message(tokenID: String, certificateRequest: String) -> Data {
            Data("sallyport-replace-registration\n\(tokenID)\n\(certificateRequest)".utf8)
        }
    }

    /// Answer to an accepted registration.
    public struct Response: Sendable, Codable, Equatable {
        /// The id the relay gave the connector (its certificates name it).
        public var connectorID: String
        /// The connector's name as registered.
        public var name: String
        /// The group it joined.
        public var group: String
        /// The connector's certificate followed by the CA that issued it, PEM.
        public var certificateChain: String
        /// The CA the relay's tunnel certificate chains to, PEM: the connector's `relayCA`.
        public var relayCA: String

        /// Creates a response.
        public init(connectorID: String, name: String, group: String, certificateChain: String, relayCA: String) {
            self.connectorID = connectorID
            self.name = name
            self.group = group
            self.certificateChain = certificateChain
            self.relayCA = relayCA
        }
    }

    /// Answer to a refused registration (and any admin API error): a stable code and a message for the operator.
    public struct Refusal: Sendable, Codable, Equatable, Error, CustomStringConvertible {
        /// `token-unknown`, `token-used`, `token-expired`, `wrong-group`, `bad-request`, `unavailable`.
        public var error: String
        /// What happened and what to do.
        public var message: String

        /// Creates a refusal.
        public init(error: String, message: String) {
            self.error = error
            self.message = message
        }

        public var description: String { self.message }
    }
}

/// A registration token: `sp1.<id>.<secret>.<pin>`.
///
/// The id names the token in the relay's store, the secret proves it (the relay keeps only its SHA-256), and
/// the pin is the SHA-256 of the relay tunnel CA's public key, so the connector can trust the relay on first
/// contact without a CA file (as kubeadm's discovery hash does).
public struct RegistrationToken: Sendable, Equatable, CustomStringConvertible {
    /// Public part: 10 lowercase letters and digits.
    public var id: String
    /// Secret part: 32 random bytes, base64url.
    public var secret: String
    /// Pin of the relay's tunnel CA public key, base64url SHA-256.
    public var pin: String

    static let prefix = "sp1"

    /// Creates a token from its parts.
    public init(id: String, secret: String, pin: String) {
        self.id = id
        self.secret = secret
        self.pin = pin
    }

    /// A new random token for a relay whose tunnel CA has `pin`.
    public static func generate(pin: String) -> RegistrationToken {
        var generator = SystemRandomNumberGenerator()
        let secret = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return RegistrationToken(id: Self.randomID(), secret: Base64URL.encode(secret), pin: pin)
    }

    /// `length` random lowercase letters and digits, without look-alikes (no l, o, 0, 1): token and connector ids.
    public static func randomID(length: Int = 10) -> String {
        let alphabet = Array("abcdefghijkmnpqrstuvwxyz23456789")
        var generator = SystemRandomNumberGenerator()
        return String((0..<length).map { _ in alphabet[Int(generator.next(upperBound: UInt32(alphabet.count)))] })
    }

    /// Reads a token as printed by `sallyport connectors token create`; says what is wrong with a bad one.
    public init(parsing text: String) throws(Registration.Refusal) {
        let parts = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        let base64URL = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        guard parts.count == 4, parts[0] == Self.prefix, !parts[1].isEmpty, parts[2].count == 43, parts[3].count == 43,
            parts[1...].allSatisfy({ $0.unicodeScalars.allSatisfy(base64URL.contains) })
        else {
            throw Registration.Refusal(
                error: "token-malformed",
                message: "this is not a Sallyport registration token (expected sp1.<id>.<secret>.<pin>, as printed by `sallyport connectors token create`); copy it again whole"
            )
        }
        self.init(id: parts[1], secret: parts[2], pin: parts[3])
    }

    public var description: String { "\(Self.prefix).\(self.id).\(self.secret).\(self.pin)" }
}
