import Logging
import SallyportConfig
import SallyportSSO
import Synchronization

/// The apps this connector serves, as last pushed by the relay, each with its SSO pipeline. Kept only in memory.
public final class AppTable: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var apps: [String: AppConfig] = [:]
        var sso: [String: SSOPipeline] = [:]
    }

    private let state = Mutex(State())
    private let handlers: HandlerCatalog
    private let services: HandlerServices

    /// Creates an empty table whose apps get their SSO handlers from `handlers`.
    public init(handlers: HandlerCatalog = .builtIn, logger: Logger = Logger(label: "sallyport.connector")) {
        self.handlers = handlers
        self.services = HandlerServices(logger: logger)
    }

    /// Replaces the apps if `generation` is not older than what is held. Returns whether it was applied.
    ///
    /// An app whose configuration did not change keeps its handler (and whatever the handler caches); a new or
    /// changed app gets a new one. An app whose handler cannot be made is logged with file, line and key and
    /// answers 502; the other apps are unaffected.
    @discardableResult
    public func apply(generation: UInt64, apps: [AppConfig]) -> Bool {
        let byName = Dictionary(apps.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let (current, held) = self.state.withLock { ($0.generation, $0) }
        guard generation >= current else { return false }
        // Handlers are made outside the lock: a slow factory must not hold up requests of other apps.
        var sso: [String: SSOPipeline] = [:]
        var failures: [ConfigError] = []
        for (name, app) in byName {
            if held.apps[name] == app, let kept = held.sso[name] {
                sso[name] = kept
                continue
            }
            let pipeline = SSOPipeline.make(for: app, handlers: self.handlers, services: self.services)
            if case .unavailable(let error) = pipeline { failures.append(error) }
            sso[name] = pipeline
        }
        let applied = self.state.withLock { state -> Bool in
            // Another push may have landed meanwhile; the newer generation wins.
            guard generation >= state.generation else { return false }
            state.generation = generation
            state.apps = byName
            state.sso = sso
            return true
        }
        guard applied else { return false }
        for error in failures {
            self.services.logger.error("app cannot be served by this connector; its requests get 502", metadata: ["error": "\(error)"])
        }
        return applied
    }

    /// The app of this name, if the relay sent it.
    public func app(named name: String) -> AppConfig? { self.state.withLock { $0.apps[name] } }

    /// The app and its SSO pipeline.
    func entry(named name: String) -> (AppConfig, SSOPipeline)? {
        self.state.withLock { state in state.apps[name].map { ($0, state.sso[name] ?? .passthrough) } }
    }

    /// The generation held.
    public var generation: UInt64 { self.state.withLock { $0.generation } }

    /// All apps held, sorted by name.
    public var apps: [AppConfig] { self.state.withLock { $0.apps.values.sorted { $0.name < $1.name } } }
}
