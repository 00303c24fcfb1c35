import HTTPTypes
import SallyportAuth
import SallyportConfig
import SallyportHTTP

/// The first decision on every public request, before any I/O: a pure function of its head, the routing
/// table and the edge's limits.
enum Admission {
    enum Decision {
        /// The relay answers at once (414, 431, 400, 404).
        case answer(ErrorPage)
        /// `/.sallyport/health`: the relay is up.
        case health
        /// The relay's own paths (sign-in callback, sign-out) on a published host, for its apps' providers.
        case relayRoute(authority: String, providers: Set<String>)
        /// A request for a published app.
        case forward(AppConfig, authority: String)
    }

    static func decide(_ head: HTTPRequest, routes: RoutingTable, limits: EdgeLimits) -> Decision {
        if let path = head.path, path.utf8.count > limits.maxRequestLineBytes {
            return .answer(.badRequest("The request address is too long.", status: .uriTooLong))
        }
        if head.headerFields.count > limits.maxHeaderCount {
            return .answer(.badRequest("The request has too many headers.", status: .requestHeaderFieldsTooLarge))
        }
        // HTTP/1.1's decoder enforces this already; HTTP/2's SETTINGS_MAX_HEADER_LIST_SIZE is only advice to
        // the client, so the edge checks every request itself.
        if Self.headerBytes(head.headerFields) > limits.maxHeaderBytes {
            return .answer(.badRequest("The request's headers are too large.", status: .requestHeaderFieldsTooLarge))
        }
        guard let authority = head.authority, !authority.isEmpty, let path = head.path, path.hasPrefix("/") else {
            return .answer(.badRequest("The request has no Host header or no path."))
        }
        if path.hasPrefix(PreAuthenticator.reservedPathPrefix) {
            if path == PreAuthenticator.healthPath { return .health }
            guard let providers = routes.providers(onHost: authority) else { return .answer(.notFound) }
            return .relayRoute(authority: authority, providers: providers)
        }
        guard let app = routes.route(authority: authority, path: path) else { return .answer(.notFound) }
        return .forward(app, authority: authority)
    }

    /// The bytes of all header names and values, as the limit counts them.
    static func headerBytes(_ fields: HTTPFields) -> Int {
        fields.reduce(0) { $0 + $1.name.rawName.utf8.count + $1.value.utf8.count }
    }
}
