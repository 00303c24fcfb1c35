import SallyportPluginAPI

/// Settings of the `challenge` handler:
///
/// ```yaml
/// sso:
///   handler: challenge
///   realm: payroll             # required: sent in the credentials
///   sendAuthorization: on401   # or always (default)
/// ```
public struct ChallengeSettings: Sendable, Equatable {
    /// When the credentials go out.
    public enum Mode: String, Sendable, Equatable {
        /// With every request.
        case always
        /// Only after the backend answered `401` with `WWW-Authenticate: Example`; the request is sent again.
        case on401
    }

    public var realm: String
    public var mode: Mode

    public init(_ settings: [String: SettingValue]) throws {
        for key in settings.keys.sorted() where key != "realm" && key != "sendAuthorization" {
            throw SettingsError(key: key, message: "unknown setting; the challenge handler knows: realm, sendAuthorization")
        }
        guard let realm = settings["realm"]?.string, !realm.isEmpty, realm.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
            throw SettingsError(key: "realm", message: "required: a word of letters, digits and -, e.g. payroll")
        }
        self.realm = realm
        switch settings["sendAuthorization"] {
        case nil: self.mode = .always
        case .string(let text)?:
            guard let mode = Mode(rawValue: text) else { throw SettingsError(key: "sendAuthorization", message: "must be always or on401 (got \"\(text)\")") }
            self.mode = mode
        default:
            throw SettingsError(key: "sendAuthorization", message: "must be always or on401")
        }
    }
}

/// Makes the `challenge` handler.
public struct ChallengeFactory: SSOHandlerFactory {
    public let name = "challenge"
    public let requiresIdentity = true
    /// One retry: the first attempt may meet a challenge, the second answers it.
    public let maximumAttempts = 2

    public init() {}

    public func makeHandler(context: HandlerContext) throws -> any SSOHandler {
        ChallengeHandler(settings: try ChallengeSettings(context.settings), logger: context.logger)
    }
}

/// Sends `Authorization: Example realm=…, user=…` always, or only in answer to a challenge.
public struct ChallengeHandler: SSOHandler {
    let settings: ChallengeSettings
    let logger: PluginLogger

    public func prepare(_ request: inout BackendRequest, identity: Identity?, attempt: Int) async -> RequestDecision {
        guard let identity else {
            return .refuse(Refusal(status: 502, message: "Sign-in to this application is misconfigured.", reason: "no identity; the app must use oidc or jwt"))
        }
        // Whatever the client sent as credentials never reaches the backend.
        request.headers.remove("Authorization")
        if settings.mode == .always || attempt > 1 {
            request.headers.set("Authorization", "Example realm=\(settings.realm), user=\(identity.userPrincipalName)")
        }
        return .proceed
    }

    public func inspect(_ response: BackendResponse, request: BackendRequest, identity: Identity?, attempt: Int) async -> ResponseDecision {
        guard settings.mode == .on401, attempt == 1, response.status == 401,
            response.headers.values(named: "WWW-Authenticate").contains(where: { $0.hasPrefix("Example") })
        else { return .deliver }
        logger.debug("answering the backend's challenge", ["attempt": "\(attempt)"])
        return .retry
    }
}
