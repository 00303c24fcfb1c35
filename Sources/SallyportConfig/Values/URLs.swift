internal import Foundation

/// The public address of an app: where users reach it on the relay.
///
/// Always `https://`; the host is lowercased; `pathPrefix` starts and ends with "/".
public struct ExternalURL: Sendable, Codable, Hashable {
    /// Lowercased host, without port or brackets.
    public var host: String
    /// The port when it is not the HTTPS default; nil means 443 (an explicit `:443` is normalised to nil).
    public var port: Int?
    /// Starts and ends with "/"; "/" when the URL has no path.
    public var pathPrefix: String
    /// Canonical form: `https://host[:port]/prefix/`.
    public var string: String

    /// Parses and normalises an external URL; `file` only labels the error.
    public init(parsing text: String, file: String = "<input>") throws(ConfigError) {
        switch Self.parse(text) {
        case .success(let url): self = url
        case .failure(let problem): throw ConfigError(file: file, message: problem.message)
        }
    }

    private init(host: String, port: Int?, pathPrefix: String) {
        self.host = host
        self.port = port
        self.pathPrefix = pathPrefix
        self.string = "https://\(HostSyntax.urlForm(host))\(port.map { ":\($0)" } ?? "")\(pathPrefix)"
    }

    static func parse(_ text: String) -> Result<ExternalURL, HostProblem> {
        let parts: URLParts
        switch URLParts.split(text) {
        case .success(let split): parts = split
        case .failure(let problem): return .failure(problem)
        }
        switch parts.scheme {
        case "https": break
        case "http": return .failure(HostProblem("must use https:// (the relay serves only HTTPS)"))
        default: return .failure(HostProblem("must be an https:// URL"))
        }
        let port = parts.port == 443 ? nil : parts.port
        return .success(ExternalURL(host: parts.host, port: port, pathPrefix: parts.path))
    }
}

/// Where the connector sends an app's requests inside the private network.
public struct InternalURL: Sendable, Codable, Hashable {
    /// "http" or "https".
    public var scheme: String
    /// Lowercased host, without port or brackets.
    public var host: String
    /// The port; defaulted from the scheme (80 or 443) when the URL has none.
    public var port: Int
    /// Starts and ends with "/": prepended to the request path after the app's path prefix is removed.
    public var path: String
    /// Canonical form: `scheme://host[:port]/path/`, the port shown only when it is not the scheme's default.
    public var string: String

    /// Parses and normalises an internal URL; `file` only labels the error.
    public init(parsing text: String, file: String = "<input>") throws(ConfigError) {
        switch Self.parse(text) {
        case .success(let url): self = url
        case .failure(let problem): throw ConfigError(file: file, message: problem.message)
        }
    }

    private init(scheme: String, host: String, port: Int, path: String) {
        self.scheme = scheme
        self.host = host
        self.port = port
        self.path = path
        let defaultPort = scheme == "https" ? 443 : 80
        self.string = "\(scheme)://\(HostSyntax.urlForm(host))\(port == defaultPort ? "" : ":\(port)")\(path)"
    }

    static func parse(_ text: String) -> Result<InternalURL, HostProblem> {
        let parts: URLParts
        switch URLParts.split(text) {
        case .success(let split): parts = split
        case .failure(let problem): return .failure(problem)
        }
        let defaultPort: Int
        switch parts.scheme {
        case "http": defaultPort = 80
        case "https": defaultPort = 443
        default: return .failure(HostProblem("must be an http:// or https:// URL"))
        }
        return .success(InternalURL(scheme: parts.scheme, host: parts.host, port: parts.port ?? defaultPort, path: parts.path))
    }
}

/// The pieces of an absolute http(s) URL with no userinfo, query or fragment.
struct URLParts {
    var scheme: String
    var host: String
    var port: Int?
    /// Starts and ends with "/".
    var path: String

    static func split(_ text: String) -> Result<URLParts, HostProblem> {
        let example = "like https://wiki.example.com/"
        if text.unicodeScalars.contains(where: { $0 == " " || $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }) {
            return .failure(HostProblem("must not contain spaces or control characters"))
        }
        guard let schemeEnd = text.range(of: "://") else {
            return .failure(HostProblem("must be an absolute URL \(example)"))
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        let schemeCharacters = Set("abcdefghijklmnopqrstuvwxyz0123456789+-.".unicodeScalars)
        guard !scheme.isEmpty, scheme.unicodeScalars.allSatisfy(schemeCharacters.contains) else {
            return .failure(HostProblem("must be an absolute URL \(example)"))
        }
        let rest = text[schemeEnd.upperBound...]
        if rest.contains("#") { return .failure(HostProblem("must not contain a fragment (\"#...\")")) }
        if rest.contains("?") { return .failure(HostProblem("must not contain a query (\"?...\")")) }
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let rawPath = rest[authorityEnd...]
        if authority.contains("@") {
            return .failure(HostProblem("must not contain a user name or password (\"user@\")"))
        }

        var hostText = Substring(authority)
        var portText: Substring?
        let bracketed = hostText.hasPrefix("[")
        if bracketed {
            guard let close = hostText.firstIndex(of: "]") else {
                return .failure(HostProblem("has an IPv6 address without its closing \"]\""))
            }
            let after = hostText[hostText.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return .failure(HostProblem("has unexpected text after the IPv6 address")) }
                portText = after.dropFirst()
            }
            hostText = hostText[hostText.index(after: hostText.startIndex)..<close]
        } else if let colon = hostText.firstIndex(of: ":") {
            portText = hostText[hostText.index(after: colon)...]
            hostText = hostText[..<colon]
            if portText!.contains(":") {
                return .failure(HostProblem("has more than one \":\" in the host; put an IPv6 address in brackets"))
            }
        }
        let host: String
        switch HostSyntax.parse(String(hostText), bracketed: bracketed) {
        case .success(let parsed): host = parsed
        case .failure(let problem): return .failure(problem)
        }
        var port: Int?
        if let portText {
            guard let parsed = PortSyntax.parse(portText, allowZero: false) else {
                return .failure(HostProblem("has an invalid port \(quoted(String(portText))) (expected 1 to 65535)"))
            }
            port = parsed
        }
        switch PathSyntax.normalize(rawPath) {
        case .success(let path): return .success(URLParts(scheme: scheme, host: host, port: port, path: path))
        case .failure(let problem): return .failure(problem)
        }
    }
}

enum PortSyntax {
    static func parse(_ text: Substring, allowZero: Bool) -> Int? {
        guard (1...5).contains(text.count), text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let port = Int(text), port <= 65535, allowZero || port > 0
        else { return nil }
        return port
    }
}

enum PathSyntax {
    /// Checks a URL path and gives it a leading and trailing "/".
    static func normalize(_ raw: Substring) -> Result<String, HostProblem> {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/%".unicodeScalars)
        if let bad = raw.unicodeScalars.first(where: { !allowed.contains($0) }) {
            return .failure(HostProblem("has a character that must be percent-encoded in the path: \(quoted(String(bad)))"))
        }
        let bytes = Array(raw.utf8)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%") {
                guard index + 2 < bytes.count, isHex(bytes[index + 1]), isHex(bytes[index + 2]) else {
                    return .failure(HostProblem("has a \"%\" in the path that is not followed by two hex digits"))
                }
                index += 3
            } else {
                index += 1
            }
        }
        let segments = raw.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        var kept: [Substring] = []
        for (offset, segment) in segments.enumerated() {
            if segment == "." || segment == ".." {
                return .failure(HostProblem("must not contain \".\" or \"..\" path segments"))
            }
            if segment.isEmpty {
                if offset == segments.count - 1 { continue }  // the trailing "/"
                return .failure(HostProblem("must not contain an empty path segment (\"//\")"))
            }
            kept.append(segment)
        }
        return .success(kept.isEmpty ? "/" : "/" + kept.joined(separator: "/") + "/")
    }

    private static func isHex(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte | 0x20)
    }
}
