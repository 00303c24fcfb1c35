public import Prometheus
import SallyportKerberos
import SallyportOps

/// The connector's Prometheus series: requests per app, backend connect errors, tunnels, and the `kcd`
/// handler's ticket cache and KDC exchanges.
public final class ConnectorMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let apps: PerApp<RequestInstruments>
    private let kdcExchanges: DurationHistogram
    private let cacheHits: Counter
    private let cacheMisses: Counter

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        self.apps = PerApp { RequestInstruments(registry: registry, prefix: "sallyport_connector", app: $0, answeredBy: "this connector") }
        self.kdcExchanges = registry.durations(
            "sallyport_kcd_kdc_exchange_duration_seconds", help: "Time of a user's S4U2Self and S4U2Proxy exchanges with the KDC."
        )
        self.cacheHits = registry.counter("sallyport_kcd_ticket_cache_hits_total", help: "kcd requests served from the ticket cache.")
        self.cacheMisses = registry.counter("sallyport_kcd_ticket_cache_misses_total", help: "kcd requests that needed the KDC.")
    }

    /// The request instruments of `app` (`-` for requests of an app this connector does not know).
    func app(_ name: String) -> RequestInstruments { self.apps[name] }

    /// A backend connection that could not be made, by app and reason (`backend-refused`, `backend-dns`…).
    func backendConnectError(app: String, reason: String) {
        self.registry.counter(
            "sallyport_backend_connect_errors_total", labels: [("app", app), ("reason", reason)], help: "Backend connections that could not be made, by app and reason."
        ).increment()
    }

    /// The delegator's events as series.
    func observe(_ event: KerberosDelegator.Event) {
        switch event {
        case .cacheHit: self.cacheHits.increment()
        case .cacheMiss: self.cacheMisses.increment()
        case .exchange(let duration, let failure):
            self.kdcExchanges.record(duration)
            if let failure {
                self.registry.counter(
                    "sallyport_kcd_failures_total", labels: [("category", failure.rawValue)], help: "Failed KDC exchanges, by category (docs/kerberos.md)."
                ).increment()
            }
        }
    }

    func set(_ name: String, labels: [(String, String)] = [], help: String, to value: Double) {
        self.registry.gauge(name, labels: labels, help: help).set(value)
    }
}
