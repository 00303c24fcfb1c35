import HTTPTypes
import SallyportConfig
import SallyportPluginAPI

/// The single-sign-on step of an app, built once when its configuration arrives: what it does to each
/// backend request.
enum SSOStage: Sendable {
    /// The request goes as it came.
    case passthrough
    /// Identity headers from templates; every spelling of those headers the client sent is removed first.
    case header(HeaderSSOSettings)
    /// The app's handler cannot run here (unknown handler, bad settings): its requests get 502, others are fine.
    case unavailable(reason: String)

    init(app: AppConfig) {
        switch app.sso.handler {
        case "passthrough":
            self = .passthrough
        case "header":
            do {
                self = .header(try HeaderSSOSettings(app.sso, file: app.sourceFile))
            } catch {
                self = .unavailable(reason: "\(error)")
            }
        default:
            self = .unavailable(reason: "no SSO handler named \"\(app.sso.handler)\" is available on this connector")
        }
    }

    enum Refusal: Error {
        case unavailable(String)
        case noIdentity
    }

    /// Applies the step to the request going to the backend.
    func apply(to request: inout HTTPRequest, identity: Identity?) throws(Refusal) {
        switch self {
        case .passthrough:
            return
        case .unavailable(let reason):
            throw .unavailable(reason)
        case .header(let settings):
            guard let identity else { throw .noIdentity }
            for header in settings.headers {
                Self.removeEverySpelling(of: header.name, from: &request.headerFields)
            }
            for header in settings.headers {
                guard let name = HTTPField.Name(header.name) else { continue }
                let value = Self.render(header.parts, identity: identity, separator: settings.separator)
                if !value.isEmpty { request.headerFields.append(HTTPField(name: name, value: value)) }
            }
        }
    }

    /// Removes `name` whatever its case, and with `_` for `-` (servers such as Apache CGI and many frameworks
    /// read `X_Remote_User` as `X-Remote-User`).
    static func removeEverySpelling(of name: String, from fields: inout HTTPFields) {
        let target = normalized(name)
        guard fields.contains(where: { normalized($0.name.canonicalName) == target }) else { return }
        fields = HTTPFields(fields.filter { normalized($0.name.canonicalName) != target })
    }

    static func normalized(_ name: String) -> String {
        String(name.lowercased().map { $0 == "_" ? "-" : $0 })
    }

    /// The template filled in; a line break or other control character in a value is replaced by a space.
    static func render(_ parts: [HeaderSSOSettings.Part], identity: Identity, separator: String) -> String {
        var value = ""
        for part in parts {
            switch part {
            case .literal(let text): value += text
            case .attribute(let name): value += (identity.values(of: name) ?? []).joined(separator: separator)
            }
        }
        return String(value.map { $0.isASCII && ($0.asciiValue! < 0x20 || $0.asciiValue! == 0x7F) ? " " : $0 })
    }
}
