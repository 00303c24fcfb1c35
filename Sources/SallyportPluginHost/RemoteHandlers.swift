public import SallyportPluginAPI
import SallyportSSO

/// A handler of a plugin that runs in a plugin host process: made there, called there.
struct RemoteFactory: RemoteHandlerFactory {
    let host: PluginHost
    let info: HostProtocol.HandlerInfo
    /// The level below which the host does not even send the handlers' log lines.
    let logLevel: LogLevel

    var name: String { self.info.name }
    var requiresIdentity: Bool { self.info.requiresIdentity }
    var maximumAttempts: Int { self.info.maximumAttempts }

    struct MadeElsewhere: Error, CustomStringConvertible {
        var description: String { "this handler is made in its plugin host" }
    }

    func makeHandler(context: HandlerContext) throws -> any SSOHandler { throw MadeElsewhere() }

    func makeRemoteHandler(context: HandlerContext) async throws -> any SSOHandler {
        let made = PluginHost.Made(
            handler: self.name, app: context.appName, settings: context.settings, logLevel: self.logLevel, logger: context.logger, metrics: context.metrics
        )
        let (id, answer) = await self.host.make(made)
        switch answer {
        case .made?:
            return RemoteHandler(host: self.host, id: id)
        case .makeFailed(_, let errors, let message)?:
            if let message { throw HostRefusal(description: message) }
            throw SettingsErrors(errors)
        default:
            throw HostRefusal(description: "its plugin host \(self.host.pluginName) is not running (see the log for why); the handler is made again once it is")
        }
    }

    struct HostRefusal: Error, CustomStringConvertible {
        var description: String
    }
}

/// Calls one handler in its plugin host.
struct RemoteHandler: SSOHandler {
    let host: PluginHost
    let id: UInt64

    func prepare(_ request: inout BackendRequest, identity: Identity?, attempt: Int) async -> RequestDecision {
        let (id, offered) = (self.id, request)
        guard case .prepared(_, let decision, let changed)? = await self.host.call({ .prepare(call: $0, handler: id, request: offered, identity: identity, attempt: attempt) }) else {
            return .refuse(PluginHost.unavailable)
        }
        request = changed
        return decision
    }

    func inspect(_ response: inout BackendResponse, request: BackendRequest, identity: Identity?, attempt: Int) async -> ResponseDecision {
        let (id, seen) = (self.id, response)
        guard case .inspected(_, let decision, let changed)? = await self.host.call({
            .inspect(call: $0, handler: id, response: seen, request: request, identity: identity, attempt: attempt)
        }) else {
            return .refuse(PluginHost.unavailable)
        }
        response = changed
        return decision
    }

    func shutdown() async { self.host.release(self.id) }
}

extension PluginHost {
    /// What a request gets when its handler's host ended (or was not running) while it waited.
    public static let unavailable = Refusal(
        status: 502, message: "Single sign-on to this application stopped for a moment. Please try again.",
        reason: "the plugin host ended before answering (see the plugin host's log lines)"
    )
}
