import Foundation
public import SallyportConfig
import SallyportPKI
import SallyportTunnel
import SallyportTLS

/// Every file connector.yaml names, checked as the connector will use it: its certificate with its key (match,
/// clientAuth, expiry), the relay CA, the plugins directory, the keytab. `sallyport config validate --connector`
/// prints all of it.
public enum ConnectorFiles {
    public static func check(_ config: ConnectorConfig) -> (errors: [String], warnings: [String]) {
        var errors: [String] = []
        var warnings: [String] = []
        do {
            warnings += try TLSFiles.checkedPair(
                certificate: config.certificate, key: config.key, certificateRole: "certificate", keyRole: "key", purpose: .client, checkExpiry: true
            ).warnings
        } catch {
            errors.append("\(error)")
        }
        if let relayCA = config.relayCA {
            do throws(CredentialFiles.Problem) {
                _ = try CredentialFiles.certificates(relayCA, role: "relayCA")
            } catch {
                errors.append(error.description)
            }
        }
        if let plugins = config.pluginsDirectory {
            var isDirectory: ObjCBool = false
            if !FileManager.default.fileExists(atPath: plugins, isDirectory: &isDirectory) || !isDirectory.boolValue {
                errors.append("plugins: \(plugins) is not a directory: create it, or remove the key")
            }
        }
        let keytab = config.kerberos.keytab
        if !FileManager.default.fileExists(atPath: keytab) {
            warnings.append("kerberos.keytab: \(keytab) does not exist: apps with sso.handler kcd will answer 503 (docs/kerberos.md); ignore this without kcd apps")
        } else if !FileManager.default.isReadableFile(atPath: keytab) {
            warnings.append("kerberos.keytab: \(keytab) is not readable by this user: kcd apps will answer 503; the keytab must be readable by the connector's user only")
        }
        return (errors, warnings)
    }
}
