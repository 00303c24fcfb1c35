public import Prometheus
import Synchronization

/// One app's request series: a counter per status class and a latency histogram, named `<prefix>_requests_total`
/// and `<prefix>_request_duration_seconds` (`sallyport` on the relay, `sallyport_connector` on connectors).
public struct RequestInstruments: Sendable {
    let requests: [Counter]
    public let duration: DurationHistogram

    /// The `status_class` labels; `none`: the client went away before an answer.
    static let classes = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"]

    public init(registry: PrometheusCollectorRegistry, prefix: String, app: String, answeredBy: String) {
        self.requests = Self.classes.map {
            registry.counter(
                "\(prefix)_requests_total", labels: [("app", app), ("status_class", $0)], help: "Requests \(answeredBy) answered, by app and status class."
            )
        }
        self.duration = registry.durations(
            "\(prefix)_request_duration_seconds", labels: [("app", app)], help: "Time from a request's head to the end of its answer, on \(answeredBy)."
        )
    }

    /// Counts one answered request.
    public func record(status: Int, duration: Duration) {
        self.requests[(100..<600).contains(status) ? status / 100 : 0].increment()
        self.duration.record(duration)
    }
}

/// Instruments made once per app (on its first request) and kept: a lookup under a lock on the hot path,
/// never a registry lookup.
public final class PerApp<Instruments: Sendable>: Sendable {
    private let made = Mutex<[String: Instruments]>([:])
    private let make: @Sendable (String) -> Instruments

    public init(_ make: @escaping @Sendable (String) -> Instruments) {
        self.make = make
    }

    public subscript(app: String) -> Instruments {
        if let instruments = self.made.withLock({ $0[app] }) { return instruments }
        let instruments = self.make(app)
        return self.made.withLock { made in
            if let raced = made[app] { return raced }
            made[app] = instruments
            return instruments
        }
    }
}
