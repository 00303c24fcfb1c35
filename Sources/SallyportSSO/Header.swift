public import SallyportPluginAPI

/// `sso.handler: header`: request headers filled from the user's identity.
///
/// ```yaml
/// sso:
///   handler: header
///   headers:
///     X-Remote-User: "{upn}"
///     X-Remote-Groups: "{groups}"
///   groupSeparator: ","
/// ```
/// Every header it sets is first removed from the request in every spelling (case, `_` for `-`), so a
/// client can never supply it.
public struct HeaderHandlerFactory: SSOHandlerFactory {
    public let name = "header"
    public let requiresIdentity = true

    public init() {}

    public func makeHandler(context: HandlerContext) throws -> any SSOHandler {
        try HeaderHandler(settings: context.settings)
    }
}

/// Sets identity headers from templates.
public struct HeaderHandler: ImmediateSSOHandler {
    public typealias Header = HeaderSettings.Header
    public typealias Part = HeaderSettings.Part

    /// The headers and separator.
    public let settings: HeaderSettings
    /// The headers to set, sorted by name.
    public var headers: [Header] { self.settings.headers }
    /// Joins list values such as `groups`.
    public var separator: String { self.settings.separator }
    /// Attributes every identity has; templates may also name claims the provider keeps.
    public static var standardAttributes: [String] { HeaderSettings.standardAttributes }

    /// Reads and checks the settings.
    public init(settings: SettingsMap) throws {
        self.settings = try HeaderSettings(settings: settings)
    }

    public func prepare(_ request: inout BackendRequest, identity: Identity?, attempt: Int) async -> RequestDecision {
        self.decide(&request, identity: identity)
    }

    public func prepareImmediately(_ request: inout BackendRequest, identity: Identity?, attempt: Int) -> RequestDecision? {
        self.decide(&request, identity: identity)
    }

    private func decide(_ request: inout BackendRequest, identity: Identity?) -> RequestDecision {
        guard let identity else {
            return .refuse(Refusal(status: 502, message: "The application's sign-in is misconfigured.", reason: "the header handler got no identity; is the app passthrough at the relay?"))
        }
        self.apply(to: &request.headers, identity: identity)
        return .proceed
    }

    /// Removes every spelling of each header, then sets those whose value is not empty.
    public func apply(to fields: inout HeaderFields, identity: Identity) {
        for header in headers { fields.remove(header.name) }
        for header in headers {
            let value = Self.render(header.parts, identity: identity, separator: separator)
            if !value.isEmpty { fields.append(header.name, value) }
        }
    }

    /// The template filled in; control characters in values become spaces.
    static func render(_ parts: [Part], identity: Identity, separator: String) -> String {
        var value = ""
        for part in parts {
            switch part {
            case .literal(let text): value += text
            case .attribute(let name): value += (identity.values(of: name) ?? []).joined(separator: separator)
            }
        }
        guard value.unicodeScalars.contains(where: HeaderSettings.isControl) else { return value }
        return String(String.UnicodeScalarView(value.unicodeScalars.map { HeaderSettings.isControl($0) ? " " : $0 }))
    }
}

/// The header handler's settings: each header with its template, and the separator for lists. Reading them
/// is all the relay and `config validate` do; the connector's handler fills them in per request.
public struct HeaderSettings: Sendable, Hashable {
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
    public let headers: [Header]
    /// Joins list values such as `groups`.
    public let separator: String

    /// Attributes every identity has; templates may also name claims the provider keeps.
    public static let standardAttributes = ["upn", "sub", "iss", "provider", "email", "name", "groups"]

    /// Headers whose meaning belongs to HTTP or to the proxy, not to an identity.
    static let forbiddenHeaders: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host",
        "content-length", "content-type", "expect", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded",
        "proxy-authorization", "proxy-authenticate",
    ]

    /// Reads and checks the settings.
    public init(settings: SettingsMap) throws {
        for key in settings.keys.sorted() where key != "headers" && key != "groupSeparator" {
            throw SettingsError(key: key, message: "unknown setting for the header handler; allowed: headers, groupSeparator")
        }
        var separator = ","
        if let value = settings["groupSeparator"] {
            guard let text = value.string, !text.unicodeScalars.contains(where: Self.isControl) else {
                throw SettingsError(key: "groupSeparator", message: "must be a string of visible characters such as \",\" or \"; \"")
            }
            separator = text
        }
        guard case .map(let map)? = settings["headers"], !map.isEmpty else {
            throw SettingsError(key: "headers", message: "must map header names to templates, e.g. X-Remote-User: \"{upn}\"")
        }
        var headers: [Header] = []
        var spellings: [String: String] = [:]
        // In the app file's order.
        for case let (name, value) in map.map({ ($0.key, $0.value) }) {
            let key = "headers.\(name)"
            guard Self.isToken(name) else { throw SettingsError(key: key, message: "is not a valid header name") }
            let normalized = String(name.lowercased().map { $0 == "_" ? "-" : $0 })
            if let other = spellings[normalized] {
                throw SettingsError(key: key, message: "is the same header as \(other) (case and _ versus - do not matter); set it once")
            }
            spellings[normalized] = name
            if Self.forbiddenHeaders.contains(normalized) || normalized.hasPrefix("sallyport-") {
                throw SettingsError(key: key, message: "cannot be set by an SSO handler (hop-by-hop, framing, forwarding or Sallyport's own header)")
            }
            guard let template = value.string else { throw SettingsError(key: key, message: "must be a template string such as \"{upn}\"") }
            headers.append(Header(name: name, parts: try Self.parseTemplate(template, key: key)))
        }
        self.headers = headers
        self.separator = separator
    }

    /// Characters a header value cannot carry (CR, LF and the other C0 controls, DEL).
    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || scalar.value == 0x7F
    }

    static func isToken(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// `"{upn} ({name})"` → literal and attribute parts. `{{` and `}}` are literal braces.
    static func parseTemplate(_ template: String, key: String) throws -> [Part] {
        var parts: [Part] = []
        var literal = ""
        var index = template.startIndex
        while index < template.endIndex {
            let character = template[index]
            let next = template.index(after: index)
            if (character == "{" || character == "}"), next < template.endIndex, template[next] == character {
                literal.append(character)
                index = template.index(after: next)
            } else if character == "{" {
                guard let close = template[next...].firstIndex(of: "}") else {
                    throw SettingsError(key: key, message: "has a \"{\" without a closing \"}\"")
                }
                let name = String(template[next..<close])
                guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || "_-.:/".contains($0) }) else {
                    throw SettingsError(key: key, message: "names an attribute that is not a claim name: {\(name)}")
                }
                if !literal.isEmpty { parts.append(.literal(literal)); literal = "" }
                parts.append(.attribute(name))
                index = template.index(after: close)
            } else if character == "}" {
                throw SettingsError(key: key, message: "has a \"}\" without an opening \"{\" (write }} for a literal brace)")
            } else if character == "\r" || character == "\n" {
                throw SettingsError(key: key, message: "cannot contain line breaks")
            } else {
                literal.append(character)
                index = next
            }
        }
        if !literal.isEmpty { parts.append(.literal(literal)) }
        return parts
    }
}
