import SallyportPluginAPI

/// Settings of the `challenge` handler:
///
/// ```yaml
/// sso:
///   handler: challenge
///   realm: payroll             # required: sent in the credentials
///   sendAuthorization: on401   # or always (default)
/// ```
public struct ChallengeSettings: Decodable, Sendable, Equatable {
    /// When the credentials go out.
    public enum Mode: String, Decodable, Sendable, Equatable, CaseIterable {
        /// With every request.
        case always
        /// Only after the backend answered `401` with `WWW-Authenticate: Example`; the request is sent again.
        case on401
    }

    public var realm: String
    public var sendAuthorization: Mode?

    /// `sendAuthorization`, `always` when absent.
    public var mode: Mode { self.sendAuthorization ?? .always }

    /// Reads the app's settings: every problem at once, each at its key.
    public init(context: HandlerContext) throws {
        self = try context.decodeSettings(Self.self)
        guard !self.realm.isEmpty, self.realm.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
            throw SettingsError(key: "realm", message: "must be a word of letters, digits and -, e.g. payroll")
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
        ChallengeHandler(settings: try ChallengeSettings(context: context), logger: context.logger)
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
        // With on401, a request that could not be sent again (a POST's body goes once) gets the credentials at once.
        if settings.mode == .always || attempt > 1 || !request.canRetry {
            request.headers.set("Authorization", "Example realm=\(settings.realm), user=\(identity.userPrincipalName)")
        }
        return .proceed
    }

    public func inspect(_ response: inout BackendResponse, request: BackendRequest, identity: Identity?, attempt: Int) async -> ResponseDecision {
        guard settings.mode == .on401, attempt == 1, response.status == 401,
            response.headers.values(named: "WWW-Authenticate").contains(where: { $0.hasPrefix("Example") })
        else { return .deliver }
        guard request.canRetry else {
            // Cannot be answered by sending the request again: the user sees no challenge they could not answer.
            logger.warning("the backend challenged a request that cannot be sent again", ["method": request.method])
            response.headers.remove("WWW-Authenticate")
            return .deliver
        }
        logger.debug("answering the backend's challenge", ["attempt": "\(attempt)"])
        return .retry
    }
}
