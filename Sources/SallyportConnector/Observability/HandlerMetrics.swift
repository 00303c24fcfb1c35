import Logging
import Prometheus
import SallyportOps
import Synchronization

/// What SSO handlers (built in or plugins) record through `PluginMetrics`, checked before it reaches the
/// registry: swift-prometheus stops the process when one name is used with two types, label sets or help
/// texts, and a handler's metric must never take the connector down.
///
/// Counters are exported as `sallyport_sso_<name>_total` and durations as `sallyport_sso_<name>_seconds`,
/// labelled `plugin`, `handler` and `app` plus the handler's own dimensions. A name keeps the dimension names of
/// its first use; a name or dimension that is not lowercase letters, digits and `_`, a reserved dimension, a
/// use with other dimension names, or more than ``maximumSeries`` series per name is dropped and logged once.
final class HandlerMetrics: Sendable {
    static let maximumSeries = 500
    static let reservedDimensions: Set<String> = ["plugin", "handler", "app", "le", "quantile"]

    private struct Shape {
        var dimensions: [String]
        var series: Set<[String]> = []
    }

    private let registry: PrometheusCollectorRegistry
    private let logger: Logger
    private let shapes = Mutex<[String: Shape]>([:])
    private let warned = Mutex<Set<String>>([])

    init(registry: PrometheusCollectorRegistry, logger: Logger) {
        self.registry = registry
        self.logger = logger
    }

    /// Where a handler's records come from.
    struct Source: Sendable {
        var plugin: String
        var handler: String
        var app: String
    }

    func increment(_ name: String, dimensions: [String: String], by amount: Int, from source: Source) {
        guard amount > 0, let labels = self.admit("sallyport_sso_\(name)_total", name: name, dimensions: dimensions, from: source) else { return }
        self.registry.counter(
            "sallyport_sso_\(name)_total", labels: labels, help: "A counter an SSO handler reports (see its documentation)."
        ).increment(by: Int64(amount))
    }

    func record(_ name: String, seconds: Double, dimensions: [String: String], from source: Source) {
        guard seconds.isFinite, seconds >= 0, seconds < 1e6, let labels = self.admit("sallyport_sso_\(name)_seconds", name: name, dimensions: dimensions, from: source) else {
            return
        }
        self.registry.durations(
            "sallyport_sso_\(name)_seconds", labels: labels, help: "A duration an SSO handler measures (see its documentation)."
        ).record(.nanoseconds(Int64(seconds * 1e9)))
    }

    /// The labels of one record, or nil when it cannot be exported.
    private func admit(_ full: String, name: String, dimensions: [String: String], from source: Source) -> [(String, String)]? {
        guard Self.isValidName(name, limit: 64) else {
            return self.refuse(full, source, "metric name \"\(name)\" is not lowercase letters, digits and _ (starting with a letter); dropped")
        }
        let names = dimensions.keys.sorted()
        if let bad = names.first(where: { !Self.isValidName($0, limit: 32) || Self.reservedDimensions.contains($0) }) {
            return self.refuse(full, source, "dimension \"\(bad)\" is reserved or not lowercase letters, digits and _; dropped")
        }
        let values = [source.plugin, source.handler, source.app] + names.map { String(dimensions[$0]!.prefix(128)) }
        let problem: String? = self.shapes.withLock { shapes in
            var shape = shapes[full] ?? Shape(dimensions: names)
            guard shape.dimensions == names else {
                return "used with dimensions [\(names.joined(separator: ", "))] after [\(shape.dimensions.joined(separator: ", "))]; dropped"
            }
            if !shape.series.contains(values) {
                guard shape.series.count < Self.maximumSeries else { return "has more than \(Self.maximumSeries) series; new ones are dropped" }
                shape.series.insert(values)
            }
            shapes[full] = shape
            return nil
        }
        if let problem { return self.refuse(full, source, problem) }
        return zip(["plugin", "handler", "app"] + names, values).map { ($0, $1) }
    }

    private func refuse(_ metric: String, _ source: Source, _ problem: String) -> [(String, String)]? {
        let first = self.warned.withLock { $0.insert("\(metric) \(problem)").inserted }
        if first {
            self.logger.warning("an SSO handler's metric cannot be exported", metadata: ["plugin": "\(source.plugin)", "handler": "\(source.handler)", "metric": "\(metric)", "problem": "\(problem)"])
        }
        return nil
    }

    static func isValidName(_ name: String, limit: Int) -> Bool {
        guard let first = name.unicodeScalars.first, ("a"..."z").contains(first), name.unicodeScalars.count <= limit else { return false }
        return name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
    }
}
