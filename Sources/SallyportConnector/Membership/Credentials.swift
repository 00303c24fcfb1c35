public import Foundation
public import NIOSSL
public import SallyportConfig
import SallyportPKI
import SallyportTunnel
import Synchronization
import X509
import SallyportTLS

/// The connector's certificate and key as it uses them now, and their renewal: a new key and request, the
/// relay's certificate for it, both written to the configured files (the key 0600) and a new TLS context for
/// the next tunnel connections.
public final class Credentials: Sendable {
    /// The certificate has expired: the connector must register again. Says how.
    public struct Expired: Error, CustomStringConvertible {
        public var description: String
    }

    private struct State {
        var context: NIOSSLContext
        var notBefore: Date
        var notAfter: Date
        var generation = 0
        var pendingKey: String?
        var renewable: Bool?
    }

    let config: ConnectorConfig
    private let state: Mutex<State>

    /// Loads the configured certificate and key; throws ``Expired`` (with the command to register again) if the
    /// certificate is no longer valid, or the file error.
    public init(config: ConnectorConfig, now: Date = Date()) throws {
        self.config = config
        let facts = try Self.facts(of: config.certificate)
        if facts.notAfter <= now {
            throw Expired(
                description: """
                    this connector's certificate (\(config.certificate)) expired at \(facts.notAfter): it was offline for longer than the relay's \
                    certificate lifetime, so it must register again. On the relay: sallyport connectors token create --group GROUP; here: \
                    sallyport connector register --relay \(config.relay) --token TOKEN --directory \((config.file as NSString).deletingLastPathComponent) --force
                    """
            )
        }
        let context = try TunnelTLS.connectorContext(certificate: config.certificate, key: config.key, relayCA: config.relayCA)
        self.state = Mutex(State(context: context, notBefore: facts.notBefore, notAfter: facts.notAfter))
    }

    /// The TLS context for the next tunnel connection.
    public var context: NIOSSLContext { self.state.withLock { $0.context } }
    /// Bumped by every installed renewal.
    public var generation: Int { self.state.withLock { $0.generation } }
    /// When the current certificate expires.
    public var notAfter: Date { self.state.withLock { $0.notAfter } }

    /// Whether the relay said it renews this certificate (it issued it), as of the last welcome.
    public var renewable: Bool { self.state.withLock { $0.renewable ?? false } }

    /// Records what a welcome said; returns whether that is news (the first welcome, or a change).
    func welcomed(renewable: Bool) -> Bool {
        self.state.withLock { state in
            defer { state.renewable = renewable }
            return state.renewable != renewable
        }
    }

    /// When to renew: once a third of the certificate's lifetime is left.
    public var renewalDue: Date {
        self.state.withLock { state in
            state.notAfter.addingTimeInterval(-state.notAfter.timeIntervalSince(state.notBefore) / 3)
        }
    }

    /// A request for a new key (kept in memory until ``install(chainPEM:)``).
    public func renewalRequest() throws -> String {
        let fresh = try KeyAndRequest.generate(commonName: self.config.name ?? ProcessInfo.processInfo.hostName)
        self.state.withLock { $0.pendingKey = fresh.privateKeyPEM }
        return fresh.requestPEM
    }

    /// Installs the relay's answer to the last request: checks it is for that key, writes key and certificate,
    /// and makes the new TLS context current.
    public func install(chainPEM: String) throws {
        guard let keyPEM = self.state.withLock({ $0.pendingKey }) else {
            throw PKIError(.invalidCertificate, "a renewed certificate arrived that no request of this connector asked for")
        }
        let leaf = try CertificateFacts.certificates(pem: chainPEM, source: "the renewed certificate")[0]
        guard try Certificate.PrivateKey(pemEncoded: keyPEM).publicKey == leaf.publicKey else {
            throw PKIError(.invalidCertificate, "the renewed certificate is not for the key this connector generated")
        }
        // Key first: a crash in between leaves the old certificate with a key it does not match, which the
        // next start reports; the reverse would be the same. Each file is replaced atomically.
        try FileWriter.replace(keyPEM, at: self.config.key, mode: 0o600)
        try FileWriter.replace(chainPEM, at: self.config.certificate, mode: 0o644)
        let context = try TunnelTLS.connectorContext(certificate: self.config.certificate, key: self.config.key, relayCA: self.config.relayCA)
        let facts = try CertificateFacts(certificate: leaf)
        self.state.withLock { state in
            state.context = context
            state.notBefore = facts.notBefore
            state.notAfter = facts.notAfter
            state.generation += 1
            state.pendingKey = nil
        }
    }

    static func facts(of file: String) throws -> CertificateFacts {
        let pem: String
        do {
            pem = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw TLSFiles.FileError(description: "certificate: cannot read \(file): \(error.localizedDescription)")
        }
        return try CertificateFacts(certificate: CertificateFacts.certificates(pem: pem, source: file)[0])
    }
}
