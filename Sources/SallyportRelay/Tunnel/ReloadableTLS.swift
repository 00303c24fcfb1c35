import Foundation
import Logging
import NIOSSL
import SallyportPKI
import Synchronization

/// A listener's TLS context that can be replaced while the relay runs: certificates are re-read when their
/// files change or on SIGHUP. A broken file keeps the last good context and is reported once per change.
/// Every (re)load warns about any certificate the context serves or trusts that expires within 14 days.
final class ReloadableTLS: Sendable {
    private struct State {
        var context: NIOSSLContext
        var stamps: [String: Date]
    }

    let name: String
    private let files: [String]
    private let make: @Sendable () throws -> NIOSSLContext
    private let logger: Logger
    private let state: Mutex<State>

    /// How early an expiring certificate is warned about.
    static let warningWindow: TimeInterval = 14 * 86400

    /// Builds the first context (a failure here stops the relay from starting, with the error).
    init(name: String, files: [String], logger: Logger, make: @escaping @Sendable () throws -> NIOSSLContext) throws {
        self.name = name
        self.files = files
        self.make = make
        self.logger = logger
        self.state = Mutex(State(context: try make(), stamps: Self.stamps(of: files)))
        self.warnAboutExpiry()
    }

    /// The context for the next connection.
    var context: NIOSSLContext { self.state.withLock { $0.context } }

    /// Re-reads the files if any changed since the last load (or always, with `force`).
    func reload(force: Bool = false) {
        let stamps = Self.stamps(of: self.files)
        let changed = self.state.withLock { state -> Bool in
            guard force || stamps != state.stamps else { return false }
            state.stamps = stamps
            return true
        }
        guard changed else { return }
        do {
            let context = try self.make()
            self.state.withLock { $0.context = context }
            self.logger.notice("certificates reloaded", metadata: ["listener": "\(self.name)"])
            self.warnAboutExpiry()
        } catch {
            self.logger.error("certificates not reloaded; the listener keeps the previous ones", metadata: ["listener": "\(self.name)", "error": "\(error)"])
        }
    }

    /// Logs a warning for each certificate in the files that expires within ``warningWindow``.
    func warnAboutExpiry(now: Date = Date()) {
        for (file, facts) in self.certificateFacts() {
            let left = facts.notAfter.timeIntervalSince(now)
            if left < Self.warningWindow {
                self.logger.warning(
                    left <= 0 ? "a certificate has expired: replace it" : "a certificate expires soon: replace it",
                    metadata: ["listener": "\(self.name)", "file": "\(file)", "subject": "\(facts.commonName ?? "")", "notAfter": "\(facts.notAfter)"]
                )
            }
        }
    }

    /// Every certificate in the listener's files (the chain, trusted CAs), with the file it is in: for expiry
    /// warnings, metrics and the status page.
    func certificateFacts() -> [(file: String, facts: CertificateFacts)] {
        var result: [(file: String, facts: CertificateFacts)] = []
        for file in self.files {
            guard let pem = try? String(contentsOfFile: file, encoding: .utf8), pem.contains("CERTIFICATE"),
                let certificates = try? CertificateFacts.certificates(pem: pem, source: file)
            else { continue }
            for certificate in certificates {
                if let facts = try? CertificateFacts(certificate: certificate) { result.append((file, facts)) }
            }
        }
        return result
    }

    private static func stamps(of files: [String]) -> [String: Date] {
        var stamps: [String: Date] = [:]
        for file in files {
            stamps[file] = (try? FileManager.default.attributesOfItem(atPath: file))?[.modificationDate] as? Date ?? .distantPast
        }
        return stamps
    }
}
