public import HTTPTypes
public import Logging
public import Prometheus
public import SallyportHTTP

/// The routes of an admin listener, the same on the relay and the connector: `/metrics`, `/readyz`, `/livez`
/// and the status page at `/`. Each side says how to refresh its metrics, whether it is ready, and what its
/// status page shows.
public struct AdminSite: Sendable {
    public let registry: PrometheusCollectorRegistry
    /// Sets the series that describe state, just before a scrape.
    public let refresh: @Sendable () async -> Void
    /// nil when ready, else why not.
    public let notReady: @Sendable () async -> String?
    /// What `/readyz` says when ready.
    public let ready: @Sendable () async -> String
    public let statusPage: @Sendable () async -> StatusPage

    public init(
        registry: PrometheusCollectorRegistry, refresh: @escaping @Sendable () async -> Void, notReady: @escaping @Sendable () async -> String?,
        ready: @escaping @Sendable () async -> String, statusPage: @escaping @Sendable () async -> StatusPage
    ) {
        self.registry = registry
        self.refresh = refresh
        self.notReady = notReady
        self.ready = ready
        self.statusPage = statusPage
    }

    public func server(logger: Logger) -> SmallHTTPServer {
        SmallHTTPServer(logger: logger) { request, _ in await self.handle(request) }
    }

    public func handle(_ request: HTTPRequest) async -> SmallHTTPServer.Reply {
        guard request.method == .get || request.method == .head else { return .text("only GET and HEAD\n", status: .methodNotAllowed) }
        switch AccessRecord.pathOnly(request.path ?? "/") {
        case "/metrics":
            await self.refresh()
            return .text(Exposition.text(of: self.registry), contentType: Exposition.contentType)
        case "/readyz":
            if let reason = await self.notReady() { return .text("not ready: \(reason)\n", status: .serviceUnavailable) }
            return .text("ready: \(await self.ready())\n")
        case "/livez":
            return .text("ok\n")
        case "/", "/status":
            var reply = SmallHTTPServer.Reply.text(await self.statusPage().html(), contentType: "text/html; charset=utf-8")
            reply.headers[.contentSecurityPolicy] = StatusPage.contentSecurityPolicy
            return reply
        default:
            return .text("not found: the admin listener serves /, /metrics, /readyz and /livez\n", status: .notFound)
        }
    }
}
