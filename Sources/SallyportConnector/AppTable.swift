public import Logging
public import SallyportConfig
public import SallyportSSO
import SallyportTunnel
public import SallyportWire
import Synchronization

/// The apps this connector serves, as last pushed by the relay, each with its SSO pipeline. Kept only in memory.
public final class AppTable: Sendable {
    private struct State {
        /// The group the relay last said this connector serves; pushes for another group are ignored.
        var group: String?
        var version: ConfigVersion?
        var apps: [String: ConnectorApp] = [:]
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

    /// Records the group the relay says this connector serves. A new group (the connector was moved) makes the
    /// next push of it apply whatever its version. Returns whether the group changed.
    @discardableResult
    public func join(group: String) -> Bool {
        self.state.withLock { state in
            guard state.group != group else { return false }
            let first = state.group == nil
            state.group = group
            if !first { state.version = nil }
            return !first
        }
    }

    /// The group the relay last said this connector serves.
    public var group: String? { self.state.withLock { $0.group } }

    /// Replaces the apps unless the table holds a newer version of the same relay epoch (a push of another
    /// epoch comes from a relay that restarted, and is the truth). Returns the version held afterwards,
    /// which is what the connector acknowledges, and whether `version` was applied.
    ///
    /// An app whose configuration did not change keeps its handler (and whatever the handler caches); a new or
    /// changed app gets a new one. An app whose handler cannot be made is logged with file, line and key and
    /// answers 502; the other apps are unaffected.
    ///
    /// `group` is the group of the tunnel the push came on: a push for a group this connector no longer serves
    /// (on a tunnel still draining after a move) is ignored.
    @discardableResult
    public func apply(_ version: ConfigVersion, apps: [ConnectorApp], group: String? = nil) -> (held: ConfigVersion, applied: Bool) {
        let byName = Dictionary(apps.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let held = self.state.withLock { $0 }
        if let group, let serving = held.group, group != serving { return (held.version ?? version, false) }
        if let current = held.version, !current.isSuperseded(by: version) { return (current, false) }
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
        let outcome = self.state.withLock { state -> (ConfigVersion, Bool) in
            if let group, let serving = state.group, group != serving { return (state.version ?? version, false) }
            // Another push may have landed meanwhile; the newer one wins.
            if let current = state.version, current != held.version, !current.isSuperseded(by: version) { return (current, false) }
            state.version = version
            state.apps = byName
            state.sso = sso
            return (version, true)
        }
        guard outcome.1 else { return outcome }
        for error in failures {
            self.services.logger.error("app cannot be served by this connector; its requests get 502", metadata: ["error": "\(error)"])
        }
        return outcome
    }

    /// The app of this name, if the relay sent it.
    public func app(named name: String) -> ConnectorApp? { self.state.withLock { $0.apps[name] } }

    /// The app and its SSO pipeline.
    func entry(named name: String) -> (app: ConnectorApp, pipeline: SSOPipeline)? {
        self.state.withLock { state in state.apps[name].map { ($0, state.sso[name] ?? .passthrough) } }
    }

    /// The version held; nil before the first push.
    public var version: ConfigVersion? { self.state.withLock { $0.version } }

    /// All apps held, sorted by name.
    public var apps: [ConnectorApp] { self.state.withLock { $0.apps.values.sorted { $0.name < $1.name } } }
}
