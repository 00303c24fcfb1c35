import SallyportConfig
import Synchronization

/// The apps this connector serves, as last pushed by the relay. Kept only in memory.
public final class AppTable: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var apps: [String: AppConfig] = [:]
        var sso: [String: SSOStage] = [:]
    }

    private let state = Mutex(State())

    /// Creates an empty table.
    public init() {}

    /// Replaces the apps if `generation` is not older than what is held. Returns whether it was applied.
    @discardableResult
    public func apply(generation: UInt64, apps: [AppConfig]) -> Bool {
        self.state.withLock { state in
            guard generation >= state.generation else { return false }
            state.generation = generation
            state.apps = Dictionary(apps.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
            state.sso = state.apps.mapValues { SSOStage(app: $0) }
            return true
        }
    }

    /// The app of this name, if the relay sent it.
    public func app(named name: String) -> AppConfig? { self.state.withLock { $0.apps[name] } }

    /// The app and its SSO step.
    func entry(named name: String) -> (AppConfig, SSOStage)? {
        self.state.withLock { state in state.apps[name].map { ($0, state.sso[name] ?? .passthrough) } }
    }

    /// The generation held.
    public var generation: UInt64 { self.state.withLock { $0.generation } }

    /// All apps held, sorted by name.
    public var apps: [AppConfig] { self.state.withLock { $0.apps.values.sorted { $0.name < $1.name } } }
}
