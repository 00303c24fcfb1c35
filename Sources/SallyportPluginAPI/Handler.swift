/// The binary interface a plugin was built against: this API's version and the Swift compiler's.
///
/// Plugins are native code linked against this module's types, and Swift on Linux has no stable ABI: a plugin
/// loads only into a `sallyport` with the same ``version`` built by the same compiler. Each value is emitted
/// into the plugin when it is compiled, so a plugin reports what it was built with, not what the host has.
public enum PluginABI {
    /// This API's version; raised on every change to a public type or protocol here.
    @_alwaysEmitIntoClient public static var version: Int32 { 3 }

    /// The compiler that built the calling code, as major·10000 + minor·100 + patch (6.3.1 → 60301).
    @_alwaysEmitIntoClient public static var compiler: Int32 {
        #if compiler(>=7.0)
        return 70000
        #elseif compiler(>=6.5)
        return 60500
        #elseif compiler(>=6.4.2)
        return 60402
        #elseif compiler(>=6.4.1)
        return 60401
        #elseif compiler(>=6.4)
        return 60400
        #elseif compiler(>=6.3.3)
        return 60303
        #elseif compiler(>=6.3.2)
        return 60302
        #elseif compiler(>=6.3.1)
        return 60301
        #elseif compiler(>=6.3)
        return 60300
        #elseif compiler(>=6.2.4)
        return 60204
        #elseif compiler(>=6.2.3)
        return 60203
        #elseif compiler(>=6.2.2)
        return 60202
        #elseif compiler(>=6.2.1)
        return 60201
        #elseif compiler(>=6.2)
        return 60200
        #else
        return 60000
        #endif
    }

    /// ``version`` and ``compiler`` in one number: what a plugin's `sallyport_plugin_abi` returns.
    @_alwaysEmitIntoClient public static var stamp: Int64 { (Int64(version) << 32) | Int64(compiler) }

    /// "plugin API 1, Swift 6.3.1" for a stamp, for messages.
    public static func describe(_ stamp: Int64) -> String {
        let compiler = Int(stamp & 0xFFFF_FFFF)
        return "plugin API \(stamp >> 32), Swift \(compiler / 10000).\(compiler / 100 % 100).\(compiler % 100)"
    }
}

/// The request the connector is about to send to the backend. A handler may change method, path and headers.
public struct BackendRequest: Sendable, Hashable, Codable {
    /// `GET`, `POST`, …
    public var method: String
    /// Path and query as the backend will see them.
    public var path: String
    /// Header fields: end-to-end fields as the user sent them (Sallyport's own are gone), the forwarding
    /// fields the connector set, and for a WebSocket upgrade `Connection` and `Upgrade`.
    public var headers: HeaderFields
    /// Set to bind the backend connection to one user: connections that carried this value are used only for
    /// requests with the same value (connection-based authentication such as Negotiate). Nil: any connection.
    public var connectionAffinity: String?
    /// Whether the request carries a body (set by the connector; a change is ignored).
    public var hasBody: Bool
    /// Whether a ``ResponseDecision/retry`` after this attempt would be honoured: the request has no body, is
    /// not an upgrade, and attempts remain (``SSOHandlerFactory/maximumAttempts``). Set by the connector; a
    /// change is ignored. When it is false, answer a challenge some other way (deliver, or refuse).
    public var canRetry: Bool

    /// Creates a request.
    public init(
        method: String, path: String, headers: HeaderFields = HeaderFields(), connectionAffinity: String? = nil, hasBody: Bool = false,
        canRetry: Bool = false
    ) {
        self.method = method
        self.path = path
        self.headers = headers
        self.connectionAffinity = connectionAffinity
        self.hasBody = hasBody
        self.canRetry = canRetry
    }
}

/// The head of the backend's response, before anything reaches the user. ``SSOHandler/inspect(_:request:identity:attempt:)``
/// may change its header fields, except framing (`Content-Length`, `Transfer-Encoding`), hop-by-hop fields and
/// Sallyport's own (`sallyport-*`), which keep the values the backend sent.
public struct BackendResponse: Sendable, Hashable, Codable {
    /// The status code.
    public let status: Int
    /// The header fields.
    public var headers: HeaderFields

    /// Creates a response head.
    public init(status: Int, headers: HeaderFields = HeaderFields()) {
        self.status = status
        self.headers = headers
    }
}

/// What a handler decides before the request goes to the backend.
public enum RequestDecision: Sendable, Hashable, Codable {
    /// Send the (possibly changed) request.
    case proceed
    /// Do not send it; the user gets this status and message.
    case refuse(Refusal)
}

/// A refused request: what the user sees, and what the operator's log says.
public struct Refusal: Sendable, Hashable, Codable {
    /// The HTTP status for the user, e.g. 403, 502, 503.
    public var status: Int
    /// A sentence for the user; names nothing internal.
    public var message: String
    /// For the connector's log: the cause and the likely fix.
    public var reason: String
    /// Extra response fields, e.g. `WWW-Authenticate` on a 401 or `Location` on a redirect.
    public var headers: HeaderFields

    /// Creates a refusal.
    public init(status: Int, message: String, reason: String, headers: HeaderFields = HeaderFields()) {
        self.status = status
        self.message = message
        self.reason = reason
        self.headers = headers
    }
}

/// What a handler decides after seeing the backend's response head.
public enum ResponseDecision: Sendable, Hashable, Codable {
    /// Pass the response (with any header changes) to the user.
    case deliver
    /// Discard it and send the request again (``SSOHandler/prepare(_:identity:attempt:)`` runs again with the
    /// next attempt number), e.g. to answer a `401 Negotiate` challenge. Honoured only when the request's
    /// ``BackendRequest/canRetry`` was true; otherwise the connector delivers the response and logs that the
    /// retry could not be made.
    case retry
    /// Discard it and answer the user with this refusal instead, e.g. when the backend's mutual-authentication
    /// reply does not verify. The backend connection is closed.
    case refuse(Refusal)
}

/// Signs users in to one app's backend. One instance serves every request of the app, concurrently.
///
/// Each call has a deadline (the app's `timeouts.sso`, default 5 s): a request whose handler has not decided by
/// then is answered `504` and the handler's late answer is dropped. Blocking work belongs in
/// ``HandlerContext/runBlocking(_:)``, never directly in these methods.
public protocol SSOHandler: Sendable {
    /// Changes or refuses the request before it goes to the backend. `identity` is the user the relay
    /// authenticated (nil for passthrough apps); `attempt` starts at 1 and grows with each retry the handler
    /// asks for. It may be called twice with the same attempt when the connector resends a body-less request
    /// on a fresh connection, so keep it free of one-time side effects.
    func prepare(_ request: inout BackendRequest, identity: Identity?, attempt: Int) async -> RequestDecision

    /// Looks at the backend's response head before the user sees it (not at a `101 Switching Protocols`), and
    /// may change its header fields (see ``BackendResponse``). `.retry` is honoured only when
    /// `request.canRetry` is true.
    func inspect(_ response: inout BackendResponse, request: BackendRequest, identity: Identity?, attempt: Int) async -> ResponseDecision

    /// Called once when the handler is replaced (its app's configuration changed or the app went away) or the
    /// connector stops: release what it holds (connections, files, tasks). Requests under way may still finish
    /// on it; no new one starts.
    func shutdown() async
}

extension SSOHandler {
    /// By default every response is delivered unchanged.
    public func inspect(_ response: inout BackendResponse, request: BackendRequest, identity: Identity?, attempt: Int) async -> ResponseDecision {
        .deliver
    }

    /// By default there is nothing to release.
    public func shutdown() async {}
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
