import Foundation
import HTTPTypes
import Logging
import NIOPosix
import SallyportConfig
import SallyportHTTP
import SallyportPluginAPI
import SallyportPluginHost
import SallyportSSO
import SallyportTunnel
import Synchronization

/// An app's single-sign-on step on this connector, made once when the app's configuration arrives.
enum SSOPipeline: Sendable {
    /// The request goes as it came (the built-in `passthrough` handler, skipped on the request path).
    case passthrough
    /// A handler runs before each request and sees each response head.
    case handler(SSOStep)
    /// The app cannot be served here (unknown handler, bad settings, failed plugin): its requests get 502.
    case unavailable([ConfigError])

    /// Makes the pipeline for `app` from the handlers this connector has.
    static func make(for app: ConnectorApp, handlers: HandlerCatalog, services: HandlerServices) async -> SSOPipeline {
        guard let made = await handlers.make(for: app, context: services.context(for:)) else { return .passthrough }
        switch made {
        case .failed(let errors):
            return .unavailable(errors)
        case .handler(let handler, let factory):
            if handler is PassthroughHandler { return .passthrough }
            // Built-in handlers bound their own waits (kcd's KDC exchanges) and run no foreign code: no deadline
            // tasks on their request path. Plugins' calls each get the app's deadline.
            let deadline = handlers.origins[factory.name] == nil ? nil : app.timeouts.sso
            return .handler(SSOStep(handler: handler, name: factory.name, maximumAttempts: max(1, factory.maximumAttempts), deadline: deadline))
        }
    }

    /// Whether both are the same made handler (or both need none).
    func isSame(as other: SSOPipeline) -> Bool {
        switch (self, other) {
        case (.passthrough, .passthrough): true
        case (.handler(let a), .handler(let b)): a.token === b.token
        default: false
        }
    }

    /// The handler, when there is one (to shut it down once replaced).
    var handler: (any SSOHandler)? {
        if case .handler(let step) = self { return step.handler }
        return nil
    }
}

/// An identity for each made handler.
final class Token: Sendable {}

/// An app's SSO handler as the request path calls it: within the app's deadline per call.
struct SSOStep: Sendable {
    /// Tells one made handler from another.
    let token = Token()
    let handler: any SSOHandler
    let name: String
    let maximumAttempts: Int
    /// `timeouts.sso`: how long each call may take; nil: the handler is built in and bounds its own waits.
    let deadline: Duration?

    /// The handler's decision on a request and the request as it changed it; nil past the deadline.
    func prepare(_ request: BackendRequest, identity: Identity?, attempt: Int) async -> (RequestDecision, BackendRequest)? {
        let handler = self.handler
        return await self.bounded {
            var request = request
            let decision = await handler.prepare(&request, identity: identity, attempt: attempt)
            return (decision, request)
        }
    }

    /// The handler's decision on a response head and the head as it changed it; nil past the deadline.
    func inspect(_ response: BackendResponse, request: BackendRequest, identity: Identity?, attempt: Int) async -> (ResponseDecision, BackendResponse)? {
        let handler = self.handler
        return await self.bounded {
            var response = response
            let decision = await handler.inspect(&response, request: request, identity: identity, attempt: attempt)
            return (decision, response)
        }
    }

    /// ``prepare(_:identity:attempt:)`` for a built-in handler that decides without waiting; nil when the call
    /// must wait.
    func prepareImmediately(_ request: BackendRequest, identity: Identity?, attempt: Int) -> (RequestDecision, BackendRequest)? {
        guard self.deadline == nil, let handler = self.handler as? any ImmediateSSOHandler else { return nil }
        var request = request
        guard let decision = handler.prepareImmediately(&request, identity: identity, attempt: attempt) else { return nil }
        return (decision, request)
    }

    /// ``inspect(_:request:identity:attempt:)`` for a built-in handler that decides without waiting; nil when the
    /// call must wait.
    func inspectImmediately(_ response: BackendResponse, request: BackendRequest, identity: Identity?, attempt: Int) -> (ResponseDecision, BackendResponse)? {
        guard self.deadline == nil, let handler = self.handler as? any ImmediateSSOHandler else { return nil }
        var response = response
        guard let decision = handler.inspectImmediately(&response, request: request, identity: identity, attempt: attempt) else { return nil }
        return (decision, response)
    }

    /// The call within the deadline (nil past it), or simply the call for a built-in handler.
    private func bounded<T: Sendable>(_ call: @escaping @Sendable () async -> T) async -> T? {
        guard let deadline = self.deadline else { return await call() }
        return await Deadline.run(deadline, call)
    }
}

/// The host services handed to handlers: the connector's log and metrics, and a thread pool for blocking work.
struct HandlerServices: Sendable {
    let logger: Logger
    /// Where handlers' metrics go; nil: nowhere (checks, tests).
    let metrics: HandlerMetrics?
    /// The plugin each plugin handler came from, by handler name; built-in handlers are not listed.
    let origins: [String: String]
    /// A log level of its own for a plugin's handlers (`plugins.logLevel`), by handler name.
    let logLevels: [String: LogLevel]

    func context(for app: ConnectorApp) -> HandlerContext {
        let handler = app.sso.handler
        let plugin = self.origins[handler] ?? "built-in"
        var logger = self.logger
        logger[metadataKey: "app"] = "\(app.name)"
        logger[metadataKey: "handler"] = "\(handler)"
        if self.origins[handler] != nil { logger[metadataKey: "plugin"] = "\(plugin)" }
        if let level = self.logLevels[handler] { logger.logLevel = Self.level(level) }
        let appLogger = logger
        let source = HandlerMetrics.Source(plugin: plugin, handler: handler, app: app.name)
        let metrics = self.metrics
        return HandlerContext(
            appName: app.name,
            settings: HandlerCatalog.settings(of: app),
            logger: PluginLogger { level, message, metadata in
                appLogger.log(level: Self.level(level), "\(message)", metadata: metadata.mapValues { .string($0) })
            },
            metrics: PluginMetrics(
                counter: { name, dimensions, amount in metrics?.increment(name, dimensions: dimensions, by: amount, from: source) },
                duration: { name, dimensions, seconds in metrics?.record(name, seconds: seconds, dimensions: dimensions, from: source) }
            ),
            blockingExecutor: self.origins[handler] == nil ? BlockingPool.executor : PluginPools.executor(for: plugin)
        )
    }

    static func level(_ level: LogLevel) -> Logger.Level {
        switch level {
        case .debug: .debug
        case .info: .info
        case .notice: .notice
        case .warning: .warning
        case .error: .error
        }
    }
}

/// Moving a request between NIO's types and the plugin API's.
enum PluginRequest {
    /// The request as a handler sees it.
    static func make(_ request: HTTPRequest, hasBody: Bool, canRetry: Bool) -> BackendRequest {
        BackendRequest(
            method: request.method.rawValue,
            path: request.path ?? "/",
            headers: fields(request.headerFields),
            hasBody: hasBody,
            canRetry: canRetry
        )
    }

    static func fields(_ fields: HTTPFields) -> HeaderFields {
        HeaderFields(fields.map { HeaderFields.Field(name: $0.name.rawName, value: $0.value) })
    }

    /// Fields a handler may not change: framing and the forwarding fields the connector sets. They keep the
    /// values they had before the handler ran.
    static let protectedFields: [HTTPField.Name] = [
        .contentLength, .transferEncoding, HTTPField.Name("X-Forwarded-For")!, HTTPField.Name("X-Forwarded-Proto")!,
        HTTPField.Name("X-Forwarded-Host")!, HTTPField.Name("Forwarded")!,
    ]

    /// A handler's changes applied to the request; nil when it set something HTTP cannot carry.
    /// Hop-by-hop, `Host` and Sallyport's own fields a handler adds are dropped again, and framing and
    /// forwarding fields keep their values from before the handler.
    static func apply(_ changed: BackendRequest, to request: HTTPRequest) -> HTTPRequest? {
        guard let method = HTTPRequest.Method(changed.method), changed.path.hasPrefix("/") else { return nil }
        var fields = HTTPFields()
        fields.reserveCapacity(changed.headers.count)
        for field in changed.headers {
            guard let name = HTTPField.Name(field.name), HTTPField.isValidValue(field.value) else { return nil }
            fields.append(HTTPField(name: name, value: field.value))
        }
        HopByHop.strip(&fields)
        TunnelProtocol.removeReserved(&fields)
        fields[values: HTTPField.Name("Host")!] = []
        for name in protectedFields { fields[values: name] = request.headerFields[values: name] }
        var result = request
        result.method = method
        result.path = changed.path
        result.headerFields = fields
        return result
    }

    /// The response head as a handler sees it.
    static func response(_ response: HTTPResponse) -> BackendResponse {
        BackendResponse(
            status: response.status.code,
            headers: fields(response.headerFields)
        )
    }

    /// Response fields a handler may not change: framing keeps the backend's values. (Hop-by-hop and
    /// Sallyport's own fields are removed from every response after the handler anyway.)
    static let protectedResponseFields: [HTTPField.Name] = [.contentLength, .transferEncoding]

    /// A handler's changes applied to a response head; nil when it set a field HTTP cannot carry.
    static func apply(_ changed: BackendResponse, to response: HTTPResponse) -> HTTPResponse? {
        var fields = HTTPFields()
        fields.reserveCapacity(changed.headers.count)
        for field in changed.headers {
            guard let name = HTTPField.Name(field.name), HTTPField.isValidValue(field.value) else { return nil }
            fields.append(HTTPField(name: name, value: field.value))
        }
        for name in protectedResponseFields { fields[values: name] = response.headerFields[values: name] }
        var result = response
        result.headerFields = fields
        return result
    }
}

/// The blocking pools of plugins loaded in process: 4 threads each, so a plugin that fills its pool waits only
/// for itself, not for the connector's KDC exchanges or another plugin's work. (A plugin in a host process has
/// the host's pool.)
enum PluginPools {
    private static let pools = Mutex<[String: NIOThreadPool]>([:])

    static func executor(for plugin: String) -> @Sendable (@escaping @Sendable () -> Void) -> Void {
        let pool = Self.pools.withLock { pools in
            if let pool = pools[plugin] { return pool }
            let pool = NIOThreadPool(numberOfThreads: 4)
            pool.start()
            pools[plugin] = pool
            return pool
        }
        return { work in pool.submit { _ in work() } }
    }
}
