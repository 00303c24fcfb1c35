import HTTPTypes
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
        /// A request for a published app, with its target normalised (``RequestPath``): what is routed and forwarded.
        case forward(AppConfig, authority: String, target: String)
    }

    /// A `Host` field left among the fields: HTTPTypes moves the first one into `authority`.
    static let hostField = HTTPField.Name("Host")!

    static func decide(_ head: HTTPRequest, routes: RoutingTable, limits: EdgeLimits, isHTTP1: Bool = true) -> Decision {
        // The relay is a reverse proxy, never a forward one; HTTP/2's extended CONNECT is not offered either.
        if head.method == .connect {
            var allow = HTTPFields()
            allow[.allow] = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
            return .answer(ErrorPage(status: .methodNotAllowed, title: "Method Not Allowed", detail: "CONNECT is not supported here.", headerFields: allow))
        }
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
        guard let authority = head.authority, !authority.isEmpty, let target = head.path, target.hasPrefix("/") else {
            return .answer(.badRequest("The request has no Host header or no path."))
        }
        guard Authority.isValid(authority) else { return .answer(.badRequest("The request's Host is malformed.")) }
        // HTTP/1.1: a second Host line (RFC 9112 §3.2 says 400). HTTP/2: a `host` field beside `:authority`
        // that names another host. Either way two hosts would reach the backend.
        if head.headerFields[values: Admission.hostField].contains(where: { isHTTP1 || $0.lowercased() != authority.lowercased() }) {
            return .answer(.badRequest(isHTTP1 ? "The request has more than one Host header." : "The request's host and :authority differ."))
        }
        // Routed and forwarded as the backend will read it: no dot segments, no runs of slashes.
        guard let normalized = RequestPath.normalize(target) else { return .answer(.badRequest("The request has no path.")) }
        let path = normalized.target
        if path.hasPrefix(RelayNamespace.pathPrefix) {
            if path == RelayNamespace.healthPath { return .health }
            guard let providers = routes.providers(onHost: authority) else { return .answer(.notFound) }
            return .relayRoute(authority: authority, providers: providers)
        }
        guard let app = routes.route(authority: authority, path: path) else { return .answer(.notFound) }
        if normalized.hasEscapes, !app.allowEscapedPath {
            return .answer(.badRequest("The request address contains an encoded slash, backslash or dot, which this application does not accept."))
        }
        return .forward(app, authority: authority, target: path)
    }

    /// The bytes of all header names and values, as the limit counts them.
    static func headerBytes(_ fields: HTTPFields) -> Int {
        fields.reduce(0) { $0 + $1.name.rawName.utf8.count + $1.value.utf8.count }
    }
}
