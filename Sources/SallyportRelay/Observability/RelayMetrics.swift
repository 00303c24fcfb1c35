public import Prometheus
import SallyportOps
import Synchronization

/// The relay's Prometheus series. Per-app instruments are made on an app's first request and kept; series
/// that describe state (tunnels, connectors, certificates, the configuration) are set when scraped.
public final class RelayMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let apps: PerApp<AppInstruments>
    /// Groups with per-group series, so a group that disappears is set to 0 rather than left at its last value.
    private let groups = Mutex<Set<String>>([])
    let reloadErrors: Counter

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        self.apps = PerApp { app in
            let labels = [("app", app)]
            return AppInstruments(
                requests: RequestInstruments(registry: registry, prefix: "sallyport", app: app, answeredBy: "the relay"),
                bytesIn: registry.counter("sallyport_request_bytes_total", labels: labels, help: "Request body bytes received from users."),
                bytesOut: registry.counter("sallyport_response_bytes_total", labels: labels, help: "Response body bytes sent to users."),
                inFlight: registry.gauge("sallyport_requests_in_flight", labels: labels, help: "Requests being answered now.")
            )
        }
        self.reloadErrors = registry.counter(
            "sallyport_config_reload_errors_total", help: "App files rejected when (re)loaded, counted once per change of the file."
        )
    }

    /// The label of requests the relay answered without an app (unrouted, health, malformed).
    static let noApp = "-"

    /// One app's request instruments.
    struct AppInstruments: Sendable {
        let requests: RequestInstruments
        let bytesIn: Counter
        let bytesOut: Counter
        let inFlight: Gauge
    }

    /// The instruments of `app` (``noApp`` for requests the relay answered without one).
    func app(_ name: String) -> AppInstruments { self.apps[name] }

    /// A pre-authentication decision: `allowed`, `sign_in` (sent to the identity provider), `unauthenticated`,
    /// `forbidden`, `error`.
    func preAuthentication(app: String, outcome: String) {
        self.registry.counter(
            "sallyport_preauth_total", labels: [("app", app), ("outcome", outcome)], help: "Pre-authentication decisions, by app and outcome."
        ).increment()
    }

    func knownGroups() -> Set<String> { self.groups.withLock { $0 } }

    func remember(groups: Set<String>) { self.groups.withLock { $0.formUnion(groups) } }

    /// Sets a gauge, made on first use.
    func set(_ name: String, labels: [(String, String)] = [], help: String, to value: Double) {
        self.registry.gauge(name, labels: labels, help: help).set(value)
    }
}
