import HTTPTypes
import SallyportConfig
import SallyportHTTP
import SallyportPluginAPI
import SallyportTunnel
import SallyportWire

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
        RelayNamespace.removeCookies(fromRequest: &tunnelHead.headerFields)
        tunnelHead.headerFields[.expect] = nil
        tunnelHead.headerFields[TunnelProtocol.Field.app] = app
        tunnelHead.headerFields[TunnelProtocol.Field.clientAddress] = context.clientAddress
        tunnelHead.headerFields[TunnelProtocol.Field.clientConnection] = context.connectionID
        tunnelHead.headerFields[TunnelProtocol.Field.requestID] = requestID
        if let upgrade { tunnelHead.headerFields[TunnelProtocol.Field.upgrade] = upgrade }
        if let identity { tunnelHead.headerFields[TunnelProtocol.Field.identity] = IdentityField.encode(identity) }
        return tunnelHead
    }

    /// What the relay makes of a request's `Upgrade`.
    enum UpgradeDecision {
        /// No protocol switch asked for (always so on HTTP/2, which has no `Upgrade`).
        case none
        /// A valid WebSocket handshake on an app that allows WebSocket: the connection may switch.
        case webSocket
        /// Another protocol (`h2c`, anything unknown): never honoured. The request goes on as a plain one
        /// (hop-by-hop removal drops `Upgrade`), and the connection closes after its answer.
        case ignored
        /// A WebSocket handshake the relay answers itself.
        case refused(ErrorPage)
    }

    /// Only WebSocket may switch a user's connection (RFC 6455 §4.2.1): a 101 turns it into a byte pipe that
    /// bypasses routing and pre-authentication for whatever follows, so nothing else gets one.
    static func upgrade(of head: HTTPRequest, isHTTP1: Bool, app: AppConfig) -> UpgradeDecision {
        guard isHTTP1, let upgrade = head.headerFields[.upgrade] else { return .none }
        guard WebSocketHandshake.namesWebSocket(upgrade) else { return .ignored }
        guard app.allowWebSocket else {
            return .refused(.badRequest("This application does not accept WebSocket connections (allowWebSocket: false).", status: .forbidden))
        }
        guard WebSocketHandshake.isValid(head) else {
            return .refused(.badRequest("The WebSocket handshake is invalid: it needs GET, Connection: Upgrade, a 16-byte Sec-WebSocket-Key and Sec-WebSocket-Version: 13."))
        }
        return .webSocket
    }
}
