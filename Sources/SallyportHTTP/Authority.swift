/// A request's authority (`Host`, HTTP/2 `:authority`) as the relay accepts it: a DNS name or IPv4 address of
/// letters, digits, `-`, `.` and `_`, or a bracketed IPv6 address, and an optional port of 1–5 digits up to
/// 65535. Anything else (`app:@evil.example`, `app:`, `app:80x`, user info, spaces) is malformed: routing on
/// a part of it and forwarding the rest as `X-Forwarded-Host` is how host confusion starts.
public enum Authority {
    /// Whether `value` is a well-formed authority.
    public static func isValid(_ value: String) -> Bool {
        var host = Substring(value)
        var port: Substring?
        if host.hasPrefix("[") {
            guard let end = host.firstIndex(of: "]") else { return false }
            let literal = host[host.index(after: host.startIndex)..<end]
            guard !literal.isEmpty, literal.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return false }
            let rest = host[host.index(after: end)...]
            if !rest.isEmpty {
                guard rest.first == ":" else { return false }
                port = rest.dropFirst()
            }
            host = literal
        } else {
            if let colon = host.firstIndex(of: ":") {
                port = host[host.index(after: colon)...]
                host = host[..<colon]
            }
            guard !host.isEmpty, host.utf8.count <= 255,
                host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "." || $0 == "_") })
            else { return false }
        }
        if let port {
            guard (1...5).contains(port.count), port.allSatisfy({ $0.isASCII && $0.isNumber }), let number = Int(port), number <= 65535 else {
                return false
            }
        }
        return true
    }
}
