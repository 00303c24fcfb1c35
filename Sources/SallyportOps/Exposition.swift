public import Prometheus

/// The metrics endpoint's body: every series in `registry`, in Prometheus's text exposition format.
public enum Exposition {
    /// The `Content-Type` of ``text(of:)``.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The registry's series as text.
    public static func text(of registry: PrometheusCollectorRegistry) -> String {
        var bytes: [UInt8] = []
        registry.emit(into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Buckets for request latencies: 1 ms to 60 s.
    public static let latencyBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
        .seconds(30), .seconds(60),
    ]
}

extension PrometheusCollectorRegistry {
    /// The counter `name` with `labels`, made on first use (the same name always takes the same help).
    public func counter(_ name: String, labels: [(String, String)] = [], help: String) -> Counter {
        self.makeCounter(descriptor: Self.descriptor(name, help: help), labels: labels)
    }

    /// The gauge `name` with `labels`, made on first use.
    public func gauge(_ name: String, labels: [(String, String)] = [], help: String) -> Gauge {
        self.makeGauge(descriptor: Self.descriptor(name, help: help), labels: labels)
    }

    /// The duration histogram `name` (exported in seconds) with `labels`, made on first use.
    public func durations(_ name: String, labels: [(String, String)] = [], buckets: [Duration] = Exposition.latencyBuckets, help: String) -> DurationHistogram {
        self.makeDurationHistogram(descriptor: Self.descriptor(name, help: help), labels: labels, buckets: buckets)
    }

    static func descriptor(_ name: String, help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }
}
