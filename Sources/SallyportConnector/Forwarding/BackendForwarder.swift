import HTTPTypes
import Logging
import NIOCore
import NIOHTTPTypes
import NIOPosix
import SallyportConfig
import SallyportHTTP
import Prometheus
import SallyportOps
import SallyportPluginAPI
import SallyportTunnel
import SallyportWire

/// What the connector's request path shares: the apps, the backend pool, the log and the metrics.
/// ``StreamExchangeHandler`` carries each tunnelled request with them.
struct BackendForwarder: Sendable {
    let apps: AppTable
    let pool: BackendPool
    let logger: Logger
    let metrics: ConnectorMetrics
    /// The access log: a line per request (``AccessRecord``), unless its app turns it off.
    let accessLogger: Logger

    /// The backend's answer cannot be delivered (a head too large for the tunnel, or no HTTP).
    static let unusableResponse = ErrorPage(
        status: .badGateway,
        title: "Bad gateway",
        detail: "The application answered with a response that cannot be delivered. Contact your administrator."
    )

    /// Maps a connect failure to the page the user sees and a reason code for the relay's log.
    static func classify(connectError error: any Error) -> (ErrorPage, ConnectorErrorReason) {
        if let error = error as? ChannelError, case .connectTimeout = error { return (.gatewayTimeout, .backendConnectTimeout) }
        if let error = error as? NIOConnectionError {
            if error.connectionErrors.contains(where: { ($0.error as? ChannelError).map { if case .connectTimeout = $0 { true } else { false } } ?? false }) {
                return (.gatewayTimeout, .backendConnectTimeout)
            }
            return (.badGateway, error.dnsAError != nil && error.connectionErrors.isEmpty ? .backendDNS : .backendRefused)
        }
        if case BackendError.tlsConfiguration = error { return (.badGateway, .backendTLSConfiguration) }
        return (.badGateway, .backendRefused)
    }
}
