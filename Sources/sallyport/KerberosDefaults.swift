import CSallyportSystem
import Foundation

/// Kerberos defaults the connector needs whatever krb5.conf says.
enum KerberosDefaults {
    /// Constrained delegation needs a forwardable TGT (S4U2Self then returns a forwardable ticket, which
    /// S4U2Proxy requires). MIT asks for one only with `forwardable = true` in `[libdefaults]`; without it every
    /// user is refused. GSS-API offers no flag for it, so the process's Kerberos configuration gets an
    /// in-memory file first in `KRB5_CONFIG` that says so; the administrator's krb5.conf follows and decides
    /// everything else. Call before any Kerberos use. Returns false where no memory file can be made.
    @discardableResult
    static func requestForwardableTickets() -> Bool {
        let fd = csallyport_memory_file("sallyport-krb5-libdefaults")
        guard fd >= 0 else { return false }
        let text = Array("[libdefaults]\n\tforwardable = true\n".utf8)
        guard text.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == text.count else {
            close(fd)
            return false
        }
        let configured = ProcessInfo.processInfo.environment["KRB5_CONFIG"].flatMap { $0.isEmpty ? nil : $0 } ?? "/etc/krb5.conf"
        setenv("KRB5_CONFIG", "/proc/self/fd/\(fd):\(configured)", 1)
        return true
    }
}
