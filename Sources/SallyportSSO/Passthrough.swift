public import SallyportPluginAPI

/// `sso.handler: passthrough`: the request goes as it came; no identity is added.
public struct PassthroughHandlerFactory: SSOHandlerFactory {
    public let name = "passthrough"
    public let requiresIdentity = false

    public init() {}

    public func makeHandler(context: HandlerContext) throws -> any SSOHandler {
        try Self.check(context.settings)
        return PassthroughHandler()
    }

    /// The passthrough handler has no settings.
    static func check(_ settings: SettingsMap) throws {
        if let key = settings.keys.sorted().first {
            throw SettingsError(key: key, message: "the passthrough handler has no settings; remove it")
        }
    }
}

/// Forwards requests unchanged. The connector skips it entirely on the request path.
public struct PassthroughHandler: ImmediateSSOHandler {
    public init() {}
    public func prepare(_ request: inout BackendRequest, identity: Identity?, attempt: Int) async -> RequestDecision { .proceed }
    public func prepareImmediately(_ request: inout BackendRequest, identity: Identity?, attempt: Int) -> RequestDecision? { .proceed }
}
