import HTTPTypes
import SallyportAuth
import SallyportConfig
import SallyportHTTP
import SallyportPluginAPI
import SallyportTunnel

/// The request head as it crosses the tunnel: the user's end-to-end headers only, plus tunnel metadata that
/// only the relay sets.
enum TunnelHead {
    /// Headers a client may not set: the relay sets the forwarding headers itself (the connector writes them
    /// for the backend from tunnel metadata).
    static let clientForwardingHeaders: [HTTPField.Name] = [
        HTTPField.Name("X-Forwarded-For")!,
        HTTPField.Name("X-Forwarded-Proto")!,
        HTTPField.Name("X-Forwarded-Host")!,
        HTTPField.Name("X-Forwarded-Port")!,
        HTTPField.Name("X-Real-IP")!,
        HTTPField.Name("Forwarded")!,
    ]

    /// The forwarding header names, lowercased with `-`.
    static let clientForwardingNames = Set(clientForwardingHeaders.map(\.canonicalName))

    /// Whether `name` is a forwarding header in any spelling (case, `_` for `-`).
    static func isClientForwarding(_ name: HTTPField.Name) -> Bool {
        let canonical = name.canonicalName
        return Self.clientForwardingNames.contains(canonical.contains("_") ? String(canonical.map { $0 == "_" ? "-" : $0 }) : canonical)
    }

    /// Hop-by-hop, client-sent forwarding and `sallyport-*` fields removed, the relay's cookies and `Expect`
    /// too; the app, client address and connection, request id, upgrade and identity added.
    static func make(
        from head: HTTPRequest, app: String, identity: Identity?, upgrade: String?, requestID: String, context: EdgeRequestContext
    ) -> HTTPRequest {
        var tunnelHead = head
        tunnelHead.scheme = "https"
        HopByHop.strip(&tunnelHead.headerFields)
        TunnelProtocol.removeReserved(&tunnelHead.headerFields)
        // Every spelling: CGI, WSGI and PHP read `X_Forwarded_For` as the real X-Forwarded-For.
        if tunnelHead.headerFields.contains(where: { Self.isClientForwarding($0.name) }) {
            tunnelHead.headerFields = HTTPFields(tunnelHead.headerFields.filter { !Self.isClientForwarding($0.name) })
        }
        // The relay's session cookies are credentials for the relay: the backend never sees them.
        PreAuthenticator.removeRelayCookies(from: &tunnelHead.headerFields)
        tunnelHead.headerFields[.expect] = nil
        tunnelHead.headerFields[TunnelProtocol.Field.app] = app
        tunnelHead.headerFields[TunnelProtocol.Field.clientAddress] = context.clientAddress
        tunnelHead.headerFields[TunnelProtocol.Field.clientConnection] = context.connectionID
        tunnelHead.headerFields[TunnelProtocol.Field.requestID] = requestID
        if let upgrade { tunnelHead.headerFields[TunnelProtocol.Field.upgrade] = upgrade }
        if let identity { tunnelHead.headerFields[TunnelProtocol.Field.identity] = IdentityField.encode(identity) }
        return tunnelHead
    }

    /// The protocol a client asks to switch to (HTTP/1.1 `Connection: upgrade` + `Upgrade: x`), if any.
    static func requestedUpgrade(_ head: HTTPRequest, isHTTP1: Bool) -> String? {
        guard isHTTP1, let upgrade = head.headerFields[.upgrade], HopByHop.connectionTokens(head.headerFields).contains("upgrade") else {
            return nil
        }
        return upgrade
    }
}
