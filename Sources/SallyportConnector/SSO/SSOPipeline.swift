import Foundation
import HTTPTypes
import Logging
import Metrics
import NIOPosix
import SallyportConfig
import SallyportHTTP
import SallyportPluginAPI
import SallyportSSO
import SallyportTunnel

/// An app's single-sign-on step on this connector, made once when the app's configuration arrives.
enum SSOPipeline: Sendable {
    /// The request goes as it came (the built-in `passthrough` handler, skipped on the request path).
    case passthrough
    /// A handler runs before each request and sees each response head.
    case handler(any SSOHandler, name: String, maximumAttempts: Int)
    /// The app cannot be served here (unknown handler, bad settings, failed plugin): its requests get 502.
    case unavailable(ConfigError)

    /// Makes the pipeline for `app` from the handlers this connector has.
    static func make(for app: ConnectorApp, handlers: HandlerCatalog, services: HandlerServices) -> SSOPipeline {
        guard let made = handlers.make(for: app, context: services.context(for:)) else { return .passthrough }
        switch made {
        case .failed(let error):
            return .unavailable(error)
        case .handler(let handler, let factory):
            if handler is PassthroughHandler { return .passthrough }
            return .handler(handler, name: factory.name, maximumAttempts: max(1, factory.maximumAttempts))
        }
    }
}

/// The host services handed to handlers: the connector's log and metrics, and its thread pool for blocking work.
struct HandlerServices: Sendable {
    let logger: Logger

    func context(for app: ConnectorApp) -> HandlerContext {
        var logger = self.logger
        logger[metadataKey: "app"] = "\(app.name)"
        logger[metadataKey: "handler"] = "\(app.sso.handler)"
        let appLogger = logger
        let appName = app.name
        let handlerName = app.sso.handler.replacingOccurrences(of: "-", with: "_")
        return HandlerContext(
            appName: app.name,
            settings: HandlerCatalog.settings(of: app),
            logger: PluginLogger { level, message, metadata in
                appLogger.log(level: Self.level(level), "\(message)", metadata: metadata.mapValues { .string($0) })
            },
            metrics: PluginMetrics { name, dimensions, amount in
                let labels = [("app", appName)] + dimensions.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
                Counter(label: "sallyport_sso_\(handlerName)_\(name)", dimensions: labels).increment(by: Int64(amount))
            },
            blockingExecutor: BlockingPool.executor
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
    static func make(_ request: HTTPRequest) -> BackendRequest {
        BackendRequest(
            method: request.method.rawValue,
            path: request.path ?? "/",
            headers: fields(request.headerFields)
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
}
