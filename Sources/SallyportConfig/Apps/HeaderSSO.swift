/// Settings of the built-in `header` SSO handler: request headers filled from the user's identity.
///
/// ```yaml
/// sso:
///   handler: header
///   headers:
///     X-Remote-User: "{upn}"
///     X-Remote-Groups: "{groups}"
///   groupSeparator: ","
/// ```
public struct HeaderSSOSettings: Sendable, Hashable {
    /// One header and its template.
    public struct Header: Sendable, Hashable {
        /// The header name as written.
        public var name: String
        /// Literal text and `{attribute}` placeholders.
        public var parts: [Part]
    }

    /// A piece of a template.
    public enum Part: Sendable, Hashable {
        case literal(String)
        /// `upn`, `sub`, `iss`, `email`, `name`, `groups`, or a claim the relay keeps.
        case attribute(String)
    }

    /// The headers to set, sorted by name.
    public var headers: [Header]
    /// Joins list values such as `groups`. Default ",".
    public var separator: String

    /// Attributes every identity has (kept claims come on top of these).
    public static let standardAttributes = ["upn", "sub", "iss", "email", "name", "groups"]

    /// The settings of an app whose handler is `header`, or the first problem with them.
    public init(_ sso: SSOConfig, file: String) throws(ConfigError) {
        switch Self.parse(sso, file: file) {
        case .success(let settings): self = settings
        case .failure(let error): throw error
        }
    }

    init(headers: [Header], separator: String) {
        self.headers = headers
        self.separator = separator
    }

    /// Reads and checks the `sso` settings of an app whose handler is `header`; errors name the setting's line.
    static func parse(_ sso: SSOConfig, file: String) -> Result<HeaderSSOSettings, ConfigError> {
        func error(_ key: String, _ message: String) -> ConfigError {
            ConfigError(file: file, line: sso.settingLines[key.split(separator: ".").first.map(String.init) ?? key], key: "sso.\(key)", message: message)
        }
        for key in sso.settings.keys where key != "headers" && key != "groupSeparator" {
            return .failure(error(key, "unknown setting for the header handler; allowed: headers, groupSeparator"))
        }
        var separator = ","
        if let value = sso.settings["groupSeparator"] {
            guard case .string(let text) = value, !text.contains(where: { $0.isASCII && ($0.asciiValue! < 0x20 || $0.asciiValue! == 0x7F) }) else {
                return .failure(error("groupSeparator", "must be a string of visible characters such as \",\" or \"; \""))
            }
            separator = text
        }
        guard case .map(let map)? = sso.settings["headers"], !map.isEmpty else {
            return .failure(error("headers", "must map header names to templates, e.g. X-Remote-User: \"{upn}\""))
        }
        var headers: [Header] = []
        var spellings: [String: String] = [:]
        for (name, value) in map.sorted(by: { $0.key < $1.key }) {
            guard isToken(name) else { return .failure(error("headers.\(name)", "is not a valid header name")) }
            let normalized = String(name.lowercased().map { $0 == "_" ? "-" : $0 })
            if let other = spellings[normalized] {
                return .failure(error("headers.\(name)", "is the same header as \(other) (case and _ versus - do not matter); set it once"))
            }
            spellings[normalized] = name
            let lowered = name.lowercased()
            if forbiddenHeaders.contains(lowered) || lowered.hasPrefix("sallyport-") || lowered.hasPrefix("sallyport_") {
                return .failure(error("headers.\(name)", "cannot be set by an SSO handler (hop-by-hop, framing or Sallyport's own header)"))
            }
            guard case .string(let template) = value else {
                return .failure(error("headers.\(name)", "must be a template string such as \"{upn}\""))
            }
            switch parseTemplate(template) {
            case .success(let parts): headers.append(Header(name: name, parts: parts))
            case .failure(let problem): return .failure(error("headers.\(name)", problem.message))
            }
        }
        return .success(HeaderSSOSettings(headers: headers, separator: separator))
    }

    /// Headers whose meaning belongs to HTTP or to the proxy, not to an identity.
    static let forbiddenHeaders: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host",
        "content-length", "content-type", "expect", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded",
    ]

    static func isToken(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// `"{upn} ({name})"` → literal and attribute parts. `{{` and `}}` are literal braces.
    static func parseTemplate(_ template: String) -> Result<[Part], TemplateProblem> {
        var parts: [Part] = []
        var literal = ""
        var index = template.startIndex
        while index < template.endIndex {
            let character = template[index]
            let next = template.index(after: index)
            if character == "{", next < template.endIndex, template[next] == "{" {
                literal.append("{")
                index = template.index(after: next)
            } else if character == "}", next < template.endIndex, template[next] == "}" {
                literal.append("}")
                index = template.index(after: next)
            } else if character == "{" {
                guard let close = template[next...].firstIndex(of: "}") else { return .failure(TemplateProblem("has a \"{\" without a closing \"}\"")) }
                let name = String(template[next..<close])
                guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." || $0 == ":" }) else {
                    return .failure(TemplateProblem("names an attribute that is not a claim name: {\(name)}"))
                }
                if !literal.isEmpty { parts.append(.literal(literal)); literal = "" }
                parts.append(.attribute(name))
                index = template.index(after: close)
            } else if character == "}" {
                return .failure(TemplateProblem("has a \"}\" without an opening \"{\" (write }} for a literal brace)"))
            } else if character == "\r" || character == "\n" {
                return .failure(TemplateProblem("cannot contain line breaks"))
            } else {
                literal.append(character)
                index = next
            }
        }
        if !literal.isEmpty { parts.append(.literal(literal)) }
        return .success(parts)
    }

    struct TemplateProblem: Error, ExpressibleByStringLiteral {
        var message: String
        init(_ message: String) { self.message = message }
        init(stringLiteral value: String) { self.message = value }
    }
}
