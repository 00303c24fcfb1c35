public import Logging
public import SallyportConfig
public import SallyportPluginAPI
import SallyportPluginHost
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
        /// The newest generation applied of each relay epoch lately seen: with tunnels to several relays, the
        /// held version is often another relay's, and a late push of an older generation must still lose.
        var newest: [UInt64: UInt64] = [:]
        var apps: [String: ConnectorApp] = [:]
        var sso: [String: SSOPipeline] = [:]
    }

    private let state = Mutex(State())
    /// Held through a whole ``apply(_:apps:group:)``: the same push arriving on every tunnel makes each
    /// handler once, not once per tunnel.
    private let applying = AsyncLock()
    private let handlers: HandlerCatalog
    private let services: HandlerServices

    /// Creates an empty table whose apps get their SSO handlers from `handlers`.
    public init(
        handlers: HandlerCatalog = .builtIn, logger: Logger = Logger(label: "sallyport.connector"), metrics: ConnectorMetrics? = nil,
        logLevels: [String: LogLevel] = [:]
    ) {
        self.handlers = handlers
        self.services = HandlerServices(
            logger: logger, metrics: metrics.map { HandlerMetrics(registry: $0.registry, logger: logger) }, origins: handlers.origins, logLevels: logLevels
        )
    }

    /// Records the group the relay says this connector serves. A new group (the connector was moved) makes the
    /// next push of it apply whatever its version. Returns whether the group changed.
    @discardableResult
    public func join(group: String) -> Bool {
        self.state.withLock { state in
            guard state.group != group else { return false }
            let first = state.group == nil
            state.group = group
            if !first {
                state.version = nil
                state.newest = [:]
            }
            return !first
        }
    }

    /// The group the relay last said this connector serves.
    public var group: String? { self.state.withLock { $0.group } }

    /// Replaces the apps unless the table holds, or has held, a newer version of the same relay epoch (a push of
    /// another epoch comes from a relay that restarted, or from another relay sharing the store, and is the
    /// truth: relays that read the same app files push the same apps). Returns the version held afterwards,
    /// which is what the connector acknowledges, and whether `version` was applied.
    ///
    /// An app whose configuration did not change keeps its handler (and whatever the handler caches); a new or
    /// changed app gets a new one. An app whose handler cannot be made is logged with file, line and key and
    /// answers 502; the other apps are unaffected.
    ///
    /// `group` is the group of the tunnel the push came on: a push for a group this connector no longer serves
    /// (on a tunnel still draining after a move) is ignored.
    @discardableResult
    public func apply(_ version: ConfigVersion, apps: [ConnectorApp], group: String? = nil) async -> (held: ConfigVersion, applied: Bool) {
        await self.applying.withLock { await self.applyLocked(version, apps: apps, group: group) }
    }

    private func applyLocked(_ version: ConfigVersion, apps: [ConnectorApp], group: String?) async -> (held: ConfigVersion, applied: Bool) {
        let byName = Dictionary(apps.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let held = self.state.withLock { $0 }
        if let group, let serving = held.group, group != serving { return (held.version ?? version, false) }
        if let current = held.version, !current.isSuperseded(by: version) { return (current, false) }
        if let newest = held.newest[version.epoch], version.generation < newest { return (held.version ?? version, false) }
        // Handlers are made outside the lock: a slow factory must not hold up requests of other apps.
        var sso: [String: SSOPipeline] = [:]
        var failures: [ConfigError] = []
        for name in apps.map(\.name) where sso[name] == nil {
            guard let app = byName[name] else { continue }
            if held.apps[name] == app, let kept = held.sso[name] {
                sso[name] = kept
                continue
            }
            let pipeline = await SSOPipeline.make(for: app, handlers: self.handlers, services: self.services)
            if case .unavailable(let errors) = pipeline { failures += errors }
            sso[name] = pipeline
        }
        let (outcome, replaced) = self.state.withLock { state -> ((ConfigVersion, Bool), [SSOPipeline]) in
            if let group, let serving = state.group, group != serving { return ((state.version ?? version, false), Array(sso.values)) }
            // Another push may have landed meanwhile; the newer one wins.
            if let current = state.version, current != held.version, !current.isSuperseded(by: version) { return ((current, false), Array(sso.values)) }
            if let newest = state.newest[version.epoch], version.generation < newest { return ((state.version ?? version, false), Array(sso.values)) }
            if state.newest[version.epoch] == nil, state.newest.count >= 64 { state.newest.removeAll() }
            state.newest[version.epoch] = version.generation
            let replaced = state.sso.filter { name, pipeline in sso[name].map { !$0.isSame(as: pipeline) } ?? true }.map(\.value)
            state.version = version
            state.apps = byName
            state.sso = sso
            return ((version, true), replaced)
        }
        // Handlers made for nothing (a push not applied) or replaced are shut down; kept ones are not.
        let kept = outcome.1 ? [] : Array(held.sso.values)
        Self.shutDown(replaced.filter { pipeline in !kept.contains { $0.isSame(as: pipeline) } })
        guard outcome.1 else { return outcome }
        for error in failures {
            self.services.logger.error("app cannot be served by this connector; its requests get 502", metadata: ["error": "\(error)"])
        }
        return outcome
    }

    /// Makes again the handlers whose factory failed (a credential file that was missing may be there now),
    /// without waiting for a change of settings. Logs an app that recovers; one that still fails the same
    /// way is not logged again. Returns the names of the apps that recovered.
    @discardableResult
    public func retryUnavailable() async -> [String] {
        await self.applying.withLock {
            let held = self.state.withLock { $0 }
            var recovered: [String: SSOPipeline] = [:]
            for (name, pipeline) in held.sso {
                guard case .unavailable(let before) = pipeline, let app = held.apps[name] else { continue }
                let again = await SSOPipeline.make(for: app, handlers: self.handlers, services: self.services)
                switch again {
                case .unavailable(let errors) where errors == before:
                    continue
                case .unavailable(let errors):
                    self.services.logger.error("app still cannot be served by this connector; its requests get 502", metadata: ["error": "\(errors.map(\.description).joined(separator: "; "))"])
                    recovered[name] = again
                default:
                    self.services.logger.notice("the app's SSO handler could be made; the app is served again", metadata: ["app": "\(name)"])
                    recovered[name] = again
                }
            }
            self.state.withLock { state in
                for (name, pipeline) in recovered where state.apps[name] == held.apps[name] { state.sso[name] = pipeline }
            }
            return recovered.filter { if case .unavailable = $0.value { false } else { true } }.keys.sorted()
        }
    }

    /// Shuts every handler down (the connector is stopping), giving each up to 5 s.
    public func shutDownHandlers() async {
        let all = self.state.withLock { state in defer { state.sso = [:] }; return Array(state.sso.values) }
        for handler in all.compactMap(\.handler) {
            _ = await Deadline.run(.seconds(5)) { await handler.shutdown() }
        }
    }

    /// Calls each handler's `shutdown()`, off the caller's path.
    private static func shutDown(_ pipelines: [SSOPipeline]) {
        let handlers = pipelines.compactMap(\.handler)
        guard !handlers.isEmpty else { return }
        Task {
            for handler in handlers { await handler.shutdown() }
        }
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
