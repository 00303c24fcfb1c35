/// The version of this API's binary interface. A plugin built against another version is refused at load.
///
/// Raised whenever a public type or protocol here changes in a way that old plugins cannot survive.
public enum PluginABI {
    /// The current ABI version; inlined into a plugin when it is compiled, so a plugin reports the version it
    /// was built with, not the host's.
    @inlinable public static var version: Int32 { 1 }
}

/// The request the connector is about to send to the backend. A handler may change method, path and headers.
public struct BackendRequest: Sendable, Hashable {
    /// `GET`, `POST`, …
    public var method: String
    /// Path and query as the backend will see them.
    public var path: String
    /// End-to-end header fields (hop-by-hop fields and Sallyport's own are already gone).
    public var headers: HeaderFields
    /// Set to bind the backend connection to one user: connections that carried this value are used only for
    /// requests with the same value (connection-based authentication such as Negotiate). Nil: any connection.
    public var connectionAffinity: String?

    /// Creates a request.
    public init(method: String, path: String, headers: HeaderFields = HeaderFields(), connectionAffinity: String? = nil) {
        self.method = method
        self.path = path
        self.headers = headers
        self.connectionAffinity = connectionAffinity
    }
}

/// The head of the backend's response, before anything reaches the user.
public struct BackendResponse: Sendable, Hashable {
    /// The status code.
    public var status: Int
    /// The header fields.
    public var headers: HeaderFields

    /// Creates a response head.
    public init(status: Int, headers: HeaderFields = HeaderFields()) {
        self.status = status
        self.headers = headers
    }
}

/// What a handler decides before the request goes to the backend.
public enum RequestDecision: Sendable, Hashable {
    /// Send the (possibly changed) request.
    case proceed
    /// Do not send it; the user gets this status and message.
    case refuse(Refusal)
}

/// A refused request: what the user sees, and what the operator's log says.
public struct Refusal: Sendable, Hashable {
    /// The HTTP status for the user, e.g. 403, 502, 503.
    public var status: Int
    /// A sentence for the user; names nothing internal.
    public var message: String
    /// For the connector's log: the cause and the likely fix.
    public var reason: String

    /// Creates a refusal.
    public init(status: Int, message: String, reason: String) {
        self.status = status
        self.message = message
        self.reason = reason
    }
}

/// What a handler decides after seeing the backend's response head.
public enum ResponseDecision: Sendable, Hashable {
    /// Pass the response to the user.
    case deliver
    /// Discard it and send the request again (``SSOHandler/prepare(_:identity:attempt:)`` runs again with the
    /// next attempt number), e.g. to answer a `401 Negotiate` challenge. The connector retries only requests
    /// without a body, at most ``SSOHandlerFactory/maximumAttempts`` times in all.
    case retry
}

/// Signs users in to one app's backend. One instance serves every request of the app, concurrently.
public protocol SSOHandler: Sendable {
    /// Changes or refuses the request before it goes to the backend. `identity` is the user the relay
    /// authenticated (nil for passthrough apps); `attempt` starts at 1.
    func prepare(_ request: inout BackendRequest, identity: Identity?, attempt: Int) async -> RequestDecision

    /// Looks at the backend's response head; `.retry` asks for the request to be sent again.
    func inspect(_ response: BackendResponse, request: BackendRequest, identity: Identity?, attempt: Int) async -> ResponseDecision
}

extension SSOHandler {
    /// By default every response is delivered.
    public func inspect(_ response: BackendResponse, request: BackendRequest, identity: Identity?, attempt: Int) async -> ResponseDecision {
        .deliver
    }
}

/// Makes the handler of each app that names it in `sso.handler`, after checking that app's settings.
public protocol SSOHandlerFactory: Sendable {
    /// The name apps use in `sso.handler`: lowercase letters, digits and `-`.
    var name: String { get }
    /// Whether the handler needs the user's identity (then an app using it cannot be `passthrough`).
    var requiresIdentity: Bool { get }
    /// How many times one request may be sent in all (1: never retried).
    var maximumAttempts: Int { get }
    /// Checks the app's settings and makes its handler. Throw ``SettingsError`` naming the setting at fault:
    /// the host reports it with the app file's name and line, and only that app is affected.
    func makeHandler(context: HandlerContext) throws -> any SSOHandler
}

extension SSOHandlerFactory {
    /// Most handlers never retry.
    public var maximumAttempts: Int { 1 }
}
