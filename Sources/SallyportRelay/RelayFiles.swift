import Foundation
import SallyportAuth
public import SallyportConfig
import SallyportPKI
import SallyportTunnel
import X509
import SallyportTLS

/// Every file relay.yaml names, checked as the relay will use it: certificates with their keys (match, usage,
/// names, expiry), CAs, the session key, client secrets. `sallyport config validate --relay` prints all of it;
/// the relay logs the warnings when it starts (its TLS set-up throws the errors).
public enum RelayFiles {
    public static func check(_ config: RelayConfig, checkExpiry: Bool = true) -> (errors: [String], warnings: [String]) {
        var errors: [String] = []
        var warnings: [String] = []
        func pair(_ certificate: String, _ key: String, _ certificateRole: String, _ keyRole: String, names: [String]) {
            do {
                let checked = try TLSFiles.checkedPair(
                    certificate: certificate, key: key, certificateRole: certificateRole, keyRole: keyRole, purpose: .server, names: names,
                    checkExpiry: checkExpiry
                )
                warnings += checked.warnings
            } catch {
                errors.append("\(error)")
            }
        }
        for (index, entry) in config.publicCertificates.enumerated() {
            pair(
                entry.certificate, entry.key, "public.certificates[\(index)].certificate", "public.certificates[\(index)].key",
                names: entry.hosts
            )
        }
        pair(config.tunnelCertificate, config.tunnelKey, "tunnel.certificate", "tunnel.key", names: config.tunnelAddress.map { [$0.host] } ?? [])
        if let certificate = config.connectors.caCertificate, let key = config.connectors.caKey {
            do throws(CredentialFiles.Problem) {
                let ca = try CredentialFiles.certificates(certificate, role: "connectors.ca.certificate")
                if let privateKey = try CredentialFiles.privateKey(key, role: "connectors.ca.key"), privateKey.publicKey != ca.first?.publicKey {
                    errors.append("connectors.ca.key: \(key) is not the key of \(certificate) (connectors.ca.certificate): their public keys differ")
                }
            } catch {
                errors.append(error.description)
            }
        }
        for (index, file) in config.connectors.trustedCAs.enumerated() {
            do throws(CredentialFiles.Problem) {
                _ = try CredentialFiles.certificates(file, role: "connectors.trustedCAs[\(index)]")
            } catch {
                errors.append(error.description)
            }
        }
        if let keyFile = config.sessions.keyFile, let problem = sessionKeyFileProblem(keyFile) { errors.append(problem) }
        for provider in config.identityProviders {
            if case .oidc(let settings) = provider.kind {
                do throws(CredentialFiles.Problem) {
                    if try CredentialFiles.read(settings.clientSecretFile, role: "identityProviders.\(provider.name).clientSecretFile")
                        .trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
                    {
                        errors.append("identityProviders.\(provider.name).clientSecretFile: \(settings.clientSecretFile) is empty")
                    }
                } catch {
                    errors.append(error.description)
                }
            }
            if let caFile = provider.caFile {
                do throws(CredentialFiles.Problem) {
                    _ = try CredentialFiles.certificates(caFile, role: "identityProviders.\(provider.name).caFile")
                } catch {
                    errors.append(error.description)
                }
            }
        }
        return (errors, warnings)
    }
}
