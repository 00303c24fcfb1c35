internal import Foundation

/// An HTTP proxy the connector reaches the relay through with `CONNECT` (config key `proxy`, or the
/// `HTTPS_PROXY` and `NO_PROXY` conventions).
public struct OutboundProxy: Sendable, Hashable, CustomStringConvertible {
    /// Host name or IP address, lowercased, without brackets.
    public var host: String
    public var port: Int
    /// Basic authentication, when the URL has a user name.
    public var username: String?
    public var password: String?
    /// Where the setting came from, for messages: `proxy` (the config key) or `HTTPS_PROXY`.
    public var source: String

    public init(host: String, port: Int, username: String? = nil, password: String? = nil, source: String = "proxy") {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.source = source
    }

    /// `http://host:port`, never with the password.
    public var description: String {
        "http://\(self.username.map { "\($0)@" } ?? "")\(self.host.contains(":") ? "[\(self.host)]" : self.host):\(self.port)"
    }

    /// The `Proxy-Authorization` value, when the proxy has a user name.
    public var authorization: String? {
        guard let username = self.username else { return nil }
        return "Basic " + Data("\(username):\(self.password ?? "")".utf8).base64EncodedString()
    }

    /// Parses `http://[user[:password]@]host[:port]` (the port defaults to 3128, as in squid and tinyproxy
    /// configurations; a bare `host:port` is taken as http://). User name and password may be percent-encoded.
    public static func parse(_ text: String, source: String = "proxy") -> Result<OutboundProxy, ProxyProblem> {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let withScheme = trimmed.contains("://") ? trimmed : "http://" + trimmed
        guard let components = URLComponents(string: withScheme), let scheme = components.scheme?.lowercased() else {
            return .failure(ProxyProblem("is not a URL like http://proxy.example.com:3128"))
        }
        guard scheme == "http" else {
            return .failure(ProxyProblem("must be an http:// proxy URL (the tunnel inside is TLS already; \(scheme):// proxies are not supported)"))
        }
        guard let host = components.host, !host.isEmpty else { return .failure(ProxyProblem("has no host: write it like http://proxy.example.com:3128")) }
        if !components.path.isEmpty, components.path != "/" { return .failure(ProxyProblem("must not have a path")) }
        if components.query != nil || components.fragment != nil { return .failure(ProxyProblem("must not have a query or fragment")) }
        let port = components.port ?? 3128
        guard (1...65535).contains(port) else { return .failure(ProxyProblem("has a port outside 1–65535")) }
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        return .success(
            OutboundProxy(
                host: bare.lowercased(), port: port, username: components.user.flatMap { $0.isEmpty ? nil : $0 }, password: components.password, source: source
            )
        )
    }

    /// The proxy for reaching `target` from the environment: `HTTPS_PROXY` (or `https_proxy`, then
    /// `ALL_PROXY`/`all_proxy`) unless `NO_PROXY`/`no_proxy` lists the target. nil: connect directly. A problem
    /// names the variable it is in.
    public static func fromEnvironment(_ environment: [String: String], target: String) -> Result<OutboundProxy?, ProxyProblem> {
        let names = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        guard let name = names.first(where: { !(environment[$0] ?? "").isEmpty }), let value = environment[name] else { return .success(nil) }
        let exclusions = environment["NO_PROXY"] ?? environment["no_proxy"] ?? ""
        if Self.excluded(target, by: exclusions) { return .success(nil) }
        return Self.parse(value, source: name).map { $0 }.mapError { ProxyProblem("\(name): \($0.message)") }
    }

    /// Whether `NO_PROXY`'s list excludes `host`: `*`, the host itself, or a domain it is in (`example.com`
    /// and `.example.com` both cover `relay.example.com`). Ports in entries are ignored; IP addresses match exactly.
    public static func excluded(_ host: String, by list: String) -> Bool {
        let host = host.lowercased()
        for raw in list.split(separator: ",") {
            var entry = raw.trimmingCharacters(in: .whitespaces).lowercased()
            if entry == "*" { return true }
            if entry.hasPrefix("["), let close = entry.firstIndex(of: "]") {
                entry = String(entry[entry.index(after: entry.startIndex)..<close])
            } else if entry.filter({ $0 == ":" }).count == 1, let colon = entry.firstIndex(of: ":") {
                entry = String(entry[..<colon])
            }
            if entry.hasPrefix("*.") { entry.removeFirst() }
            let domain = entry.hasPrefix(".") ? String(entry.dropFirst()) : entry
            if domain.isEmpty { continue }
            if host == domain || host.hasSuffix("." + domain) { return true }
        }
        return false
    }
}

/// Why a proxy setting is not usable.
public struct ProxyProblem: Error, Sendable, Equatable {
    public var message: String
    init(_ message: String) { self.message = message }
}
