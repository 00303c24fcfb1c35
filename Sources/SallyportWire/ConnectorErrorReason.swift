/// Why the connector, not the backend, answered a request: the value of the `sallyport-error` response field
/// (`TunnelProtocol.Field.error`), written by the connector, read by the relay, and logged by both as the
/// access log's `error`. A relay that meets a value it does not know (a newer connector) logs it and treats the
/// answer as the backend's.
public enum ConnectorErrorReason: String, Sendable, CaseIterable, CustomStringConvertible {
    /// The connector has no configuration for the app (yet).
    case unknownApp = "unknown-app"
    /// The app's SSO handler cannot run on this connector.
    case ssoUnavailable = "sso-unavailable"
    /// The SSO handler did not decide within `timeouts.sso`.
    case ssoTimeout = "sso-timeout"
    /// The SSO handler refused the request.
    case ssoRefused = "sso-refused"
    /// The SSO handler refused the backend's response.
    case ssoRefusedResponse = "sso-refused-response"
    /// The SSO handler produced a request HTTP cannot carry.
    case ssoBadRequest = "sso-bad-request"
    /// The backend refused the connection.
    case backendRefused = "backend-refused"
    /// The connection to the backend was not made within `timeouts.connect`.
    case backendConnectTimeout = "backend-connect-timeout"
    /// The backend's name does not resolve.
    case backendDNS = "backend-dns"
    /// The app's `backendTLS` cannot be used (a CA file missing or unreadable).
    case backendTLSConfiguration = "backend-tls-configuration"
    /// No response head within `timeouts.response`.
    case backendTimeout = "backend-timeout"
    /// The backend closed the connection without an answer.
    case backendClosed = "backend-closed"
    /// The backend's response head is larger than the tunnel carries.
    case backendHeadTooLarge = "backend-head-too-large"
    /// The backend answered with bytes that are no HTTP response.
    case backendBadResponse = "backend-bad-response"

    /// As on the wire and in the logs.
    public var description: String { self.rawValue }

    /// The backend was never reached, so the request was not sent: another connector may take it at once.
    public var requestNotSent: Bool {
        switch self {
        case .backendRefused, .backendConnectTimeout, .backendDNS, .backendTLSConfiguration: true
        default: false
        }
    }
}
