import Crypto
import Foundation
public import Logging
import Prometheus
public import SallyportConfig
import SallyportSSO
import SallyportTunnel
public import SallyportWire
import Synchronization

/// The relay's published apps: loads the app directory, keeps the last good version of every file, and tells
/// subscribers (tunnel connections) when the apps change.
///
/// A bad edit never takes down what was serving: a file that fails to parse keeps its last good version, and
/// the errors are logged with file, line and key.
public final class AppCatalog: Sendable {
    /// What requests read: the routing table and the version of each app.
    public struct Snapshot: Sendable {
        /// This relay's epoch and the generation, which increases with every change.
        public var version: ConfigVersion
        /// The apps in service.
        public let apps: [AppConfig]
        /// Host and path to app.
        public var routes: RoutingTable
        /// The generations of each app (by name) that routing needs.
        public var appVersions: [String: AppVersion]

        /// The generation, within this relay's epoch.
        public var generation: UInt64 { self.version.generation }

        /// A digest of the apps in service (what connectors get and how the relay routes them), equal on relays
        /// that read the same app files wherever their directories are: how relays sharing a store show that
        /// they converged. Computed once per snapshot; relays announce it every few seconds.
        public let digest: String

        /// Creates a snapshot of `apps`.
        public init(version: ConfigVersion, apps: [AppConfig], routes: RoutingTable, appVersions: [String: AppVersion]) {
            self.version = version
            self.apps = apps
            self.routes = routes
            self.appVersions = appVersions
            self.digest = Self.digest(of: apps)
        }

        static func digest(of apps: [AppConfig]) -> String {
            let apps = apps.map { app in
                var app = app
                app.sourceFile = (app.sourceFile as NSString).lastPathComponent
                return app
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let bytes = (try? encoder.encode(apps)) ?? Data()
            return SHA256.hash(data: bytes).prefix(8).map { String(format: "%02x", $0) }.joined()
        }

        /// What the connectors of `group` receive.
        public func appSet(group: String) -> ControlMessage.AppSet {
            ControlMessage.AppSet(version: self.version, apps: self.apps.filter { $0.connectorGroup == group }.map(\.forConnector))
        }
    }

    /// When an app last changed for its connectors, and since when its group's connectors have had it.
    public struct AppVersion: Sendable, Equatable {
        /// The generation in which what connectors see of the app last changed. Edits that change nothing
        /// a connector uses (access rules, comments, lines) leave it alone.
        public var changed: UInt64
        /// The generation since which the app has been in its connector group without a break: a connector
        /// that applied at least this one serves some version of it.
        public var introduced: UInt64
    }

    private struct State {
        var snapshot: Snapshot
        var lastGoodByFile: [String: AppConfig] = [:]
        var lastErrors: [ConfigError] = []
        var subscribers: [Int: AsyncStream<Snapshot>.Continuation] = [:]
        var nextSubscriber = 0
    }

    private let directory: String
    private let identityProviders: [IdentityProviderConfig]
    private let logger: Logger
    private let metrics: RelayMetrics?
    private let state: Mutex<State>

    /// Creates an empty catalog for `directory`; call ``reload()`` to load it. Apps are checked against
    /// the relay's identity providers (their names, methods and kept claims).
    public init(directory: String, identityProviders: [IdentityProviderConfig] = [], logger: Logger, metrics: RelayMetrics? = nil) {
        self.directory = directory
        self.identityProviders = identityProviders
        self.logger = logger
        self.metrics = metrics
        self.state = Mutex(
            State(snapshot: Snapshot(version: ConfigVersion(epoch: ConfigVersion.newEpoch(), generation: 0), apps: [], routes: RoutingTable(apps: []), appVersions: [:]))
        )
    }

    /// The current snapshot.
    public var snapshot: Snapshot { self.state.withLock { $0.snapshot } }

    /// The errors of the last reload (empty when every file is good).
    var lastErrors: [ConfigError] { self.state.withLock { $0.lastErrors } }

    /// Re-reads the directory. Returns true when the apps in service changed.
    @discardableResult
    public func reload() -> Bool {
        var load = ConfigLoader.loadApps(directory: self.directory)
        // An app that names a provider the relay lacks, or whose built-in SSO handler refuses its settings, is a
        // bad file like any other: its last good version stays. (Plugin handlers are checked by the connectors.)
        let resolved = HandlerCatalog.checkOnRelay(Array(load.appsByFile.values), identityProviders: self.identityProviders)
        let resolvedFiles = Set(resolved.apps.map(\.sourceFile))
        for (file, _) in load.appsByFile where !resolvedFiles.contains(file) {
            load.appsByFile[file] = nil
            load.errorFiles.insert(file)
        }
        for app in resolved.apps { load.appsByFile[app.sourceFile] = app }
        load.errors += resolved.errors
        let (changed, errors, previousErrors, before, snapshot) = self.state.withLock { state -> (Bool, [ConfigError], [ConfigError], [AppConfig], Snapshot) in
            let previousErrors = state.lastErrors
            let before = state.snapshot.apps
            var byFile = load.appsByFile
            for file in load.errorFiles {
                if let lastGood = state.lastGoodByFile[file] { byFile[file] = lastGood }
            }
            let checked = ConfigLoader.checkConflicts(byFile.values.sorted { $0.sourceFile < $1.sourceFile })
            // Only files that parsed become the new last-good versions.
            var lastGood = state.lastGoodByFile.filter { byFile[$0.key] != nil }
            for (file, app) in load.appsByFile { lastGood[file] = app }
            state.lastGoodByFile = lastGood
            let newErrors = load.errors + checked.errors
            state.lastErrors = newErrors

            let apps = checked.apps.sorted { $0.name < $1.name }
            guard apps != state.snapshot.apps else { return (false, newErrors, previousErrors, before, state.snapshot) }
            let version = ConfigVersion(epoch: state.snapshot.version.epoch, generation: state.snapshot.generation + 1)
            let appVersions = Self.appVersions(apps, generation: version.generation, previous: state.snapshot)
            state.snapshot = Snapshot(version: version, apps: apps, routes: RoutingTable(apps: apps), appVersions: appVersions)
            // Under the lock, so two reloads cannot reach a subscriber out of order.
            for continuation in state.subscribers.values { continuation.yield(state.snapshot) }
            return (true, newErrors, previousErrors, before, state.snapshot)
        }
        // A broken file is reported once per change: the same problem on the next reload is not news.
        let news = errors.filter { !previousErrors.contains($0) }
        self.metrics?.reloadErrors.increment(by: Int64(Set(news.map(\.file)).count))
        for error in news {
            self.logger.error("app configuration rejected; the last good version (if any) keeps serving", metadata: ["error": "\(error)"])
        }
        if changed {
            let report = Self.changes(from: before, to: snapshot.apps)
            var metadata: Logger.Metadata = ["generation": "\(snapshot.generation)", "apps": "\(snapshot.apps.count)"]
            for (key, names) in [("added", report.added), ("changed", report.changed), ("removed", report.removed)] where !names.isEmpty {
                metadata[key] = "\(names.joined(separator: ","))"
            }
            self.logger.info("apps loaded", metadata: metadata)
        }
        return changed
    }

    /// Which apps (by name) a reload added, changed or removed.
    static func changes(from before: [AppConfig], to after: [AppConfig]) -> (added: [String], changed: [String], removed: [String]) {
        let old = Dictionary(before.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let new = Dictionary(after.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        return (
            added: new.keys.filter { old[$0] == nil }.sorted(),
            changed: new.compactMap { name, app in old[name].map { $0 == app ? nil : name } ?? nil }.sorted(),
            removed: old.keys.filter { new[$0] == nil }.sorted()
        )
    }

    /// The versions of `apps` at `generation`, carrying over what did not change since `previous`.
    static func appVersions(_ apps: [AppConfig], generation: UInt64, previous: Snapshot) -> [String: AppVersion] {
        let old = Dictionary(previous.apps.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var versions: [String: AppVersion] = [:]
        for app in apps {
            guard let before = old[app.name], before.connectorGroup == app.connectorGroup, let kept = previous.appVersions[app.name] else {
                versions[app.name] = AppVersion(changed: generation, introduced: generation)
                continue
            }
            versions[app.name] = AppVersion(changed: before.forConnector == app.forConnector ? kept.changed : generation, introduced: kept.introduced)
        }
        return versions
    }

    /// The current snapshot, then one per change, until the consumer stops iterating. When changes come faster
    /// than the consumer reads, it gets the newest (each snapshot is complete).
    ///
    /// Subscribing and taking the current snapshot happen together, so no change can fall between them.
    public func updates() -> AsyncStream<Snapshot> {
        let (stream, continuation) = AsyncStream<Snapshot>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id = self.state.withLock { state in
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[id] = continuation
            continuation.yield(state.snapshot)
            return id
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
        }
        return stream
    }
}
