import HTTPTypes
import SallyportConfig
import SallyportHTTP
import SallyportTunnel

/// The request head as the backend sees it, made from the tunnel stream's head, and what it tells the connector.
enum BackendHead {
    /// The request the backend sees: internal host and path, forwarding headers from tunnel metadata, no
    /// tunnel-private fields. `hasBody` (known once the first part arrived) makes the head say the truth about
    /// its body: one without `Content-Length` (chunked HTTP/1.1, HTTP/2) is sent chunked, so the SSO handler
    /// and the forwarder agree on whether there is one.
    static func make(_ head: HTTPRequest, app: ConnectorApp, upgrade: String?, hasBody: Bool) -> HTTPRequest {
        var request = head
        let clientAddress = head.headerFields[TunnelProtocol.Field.clientAddress]
        TunnelProtocol.removeReserved(&request.headerFields)
        request.scheme = app.internalURL.scheme
        request.path = self.mapPath(head.path ?? "/", from: app.externalPathPrefix, to: app.internalURL.path)
        if !app.preserveHost { request.authority = self.internalAuthority(app.internalURL) }
        if let clientAddress { request.headerFields[HTTPField.Name("X-Forwarded-For")!] = clientAddress }
        request.headerFields[HTTPField.Name("X-Forwarded-Proto")!] = "https"
        if let host = head.authority { request.headerFields[HTTPField.Name("X-Forwarded-Host")!] = host }
        if let upgrade {
            request.headerFields[.connection] = "Upgrade"
            request.headerFields[.upgrade] = upgrade
        } else if hasBody, request.headerFields[.contentLength] == nil {
            request.headerFields[.transferEncoding] = "chunked"
        }
        return request
    }

    /// Maps an external request path (with query) onto the internal path prefix.
    static func mapPath(_ path: String, from externalPrefix: String, to internalPrefix: String) -> String {
        let parts = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let pathPart = parts[0]
        let query = parts.count > 1 ? "?" + parts[1] : ""
        let mapped: String
        if pathPart.hasPrefix(externalPrefix) {
            mapped = internalPrefix + pathPart.dropFirst(externalPrefix.count)
        } else if pathPart + "/" == externalPrefix {
            mapped = internalPrefix
        } else {
            mapped = String(pathPart)
        }
        return mapped + query
    }

    static func internalAuthority(_ url: InternalURL) -> String {
        let host = url.host.contains(":") ? "[\(url.host)]" : url.host
        let defaultPort = url.scheme == "https" ? 443 : 80
        return url.port == defaultPort ? host : "\(host):\(url.port)"
    }

    /// Whether the SSO handler put an `Authorization` on the request that the user did not send: then the
    /// backend's answer to it (a Negotiate reply token, `Persistent-Auth`) is the connector's, not the user's.
    static func handlerAddedAuthorization(_ outgoing: HTTPRequest, to original: HTTPRequest) -> Bool {
        guard let sent = outgoing.headerFields[.authorization] else { return false }
        return sent != original.headerFields[.authorization]
    }

    /// Whether the request carries the user's own connection-based authentication (NTLM, or Negotiate, which
    /// may wrap NTLM): the backend then authenticates the connection, not the request, and it must never
    /// serve another user.
    static func carriesConnectionAuthentication(_ request: HTTPRequest) -> Bool {
        request.headerFields[values: .authorization].contains { value in
            let scheme = value.prefix { $0 != " " }.lowercased()
            return scheme == "ntlm" || scheme == "negotiate"
        }
    }

    /// Drops the backend's reply to the connector's own authentication from a response for the user.
    static func removeConnectorAuthentication(_ fields: inout HTTPFields) {
        let kept = fields[values: .wwwAuthenticate].filter { !$0.lowercased().hasPrefix("negotiate") }
        fields[values: .wwwAuthenticate] = kept
        fields[values: HTTPField.Name("Persistent-Auth")!] = []
    }
}
