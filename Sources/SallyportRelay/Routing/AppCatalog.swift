import Logging
import SallyportConfig
import SallyportSSO
import Synchronization

/// The relay's published apps: loads the app directory, keeps the last good version of every file, and tells
/// subscribers (tunnel connections) when the apps change.
///
/// A bad edit never takes down what was serving: a file that fails to parse keeps its last good version, and
/// the errors are logged with file, line and key.
public final class AppCatalog: Sendable {
    /// What requests read: the routing table and the generation each app last changed in.
    public struct Snapshot: Sendable {
        /// Increases with every change.
        public var generation: UInt64
        /// The apps in service.
        public var apps: [AppConfig]
        /// Host and path to app.
        public var routes: RoutingTable
        /// Generation in which each app (by name) last changed.
        public var appGeneration: [String: UInt64]
        /// The apps of one connector group.
        public func apps(group: String) -> [AppConfig] { apps.filter { $0.connectorGroup == group } }
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
    private let state: Mutex<State>

    /// Creates an empty catalog for `directory`; call ``reload()`` to load it. Apps are checked against
    /// the relay's identity providers (their names, methods and kept claims).
    public init(directory: String, identityProviders: [IdentityProviderConfig] = [], logger: Logger) {
        self.directory = directory
        self.identityProviders = identityProviders
        self.logger = logger
        self.state = Mutex(State(snapshot: Snapshot(generation: 0, apps: [], routes: RoutingTable(apps: []), appGeneration: [:])))
    }

    /// The current snapshot.
    public var snapshot: Snapshot { self.state.withLock { $0.snapshot } }

    /// The errors of the last reload (empty when every file is good).
    public var lastErrors: [ConfigError] { self.state.withLock { $0.lastErrors } }

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
        let (changed, errors, snapshot, continuations) = self.state.withLock { state -> (Bool, [ConfigError], Snapshot, [AsyncStream<Snapshot>.Continuation]) in
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
            guard apps != state.snapshot.apps else { return (false, newErrors, state.snapshot, []) }
            let generation = state.snapshot.generation + 1
            var appGeneration: [String: UInt64] = [:]
            let old = Dictionary(state.snapshot.apps.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            for app in apps {
                appGeneration[app.name] = old[app.name] == app ? (state.snapshot.appGeneration[app.name] ?? generation) : generation
            }
            state.snapshot = Snapshot(generation: generation, apps: apps, routes: RoutingTable(apps: apps), appGeneration: appGeneration)
            return (true, newErrors, state.snapshot, Array(state.subscribers.values))
        }
        for error in errors {
            self.logger.error("app configuration rejected; the last good version (if any) keeps serving", metadata: ["error": "\(error)"])
        }
        if changed {
            self.logger.info(
                "apps loaded",
                metadata: ["generation": "\(snapshot.generation)", "apps": "\(snapshot.apps.map(\.name).joined(separator: ","))"]
            )
            for continuation in continuations { continuation.yield(snapshot) }
        }
        return changed
    }

    /// A stream of snapshots, one per change, until the consumer stops iterating.
    public func changes() -> AsyncStream<Snapshot> {
        let (stream, continuation) = AsyncStream<Snapshot>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id = self.state.withLock { state in
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[id] = continuation
            return id
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
        }
        return stream
    }
}
