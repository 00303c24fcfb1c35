/// A handler setting as written in the app file under `sso:`.
public indirect enum SettingValue: Sendable, Hashable {
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case list([SettingValue])
    case map([String: SettingValue])
    case null

    /// The value when it is a string.
    public var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }
}

/// A setting the factory cannot accept: which key (dotted path below `sso`, e.g. `headers.X-User`) and why.
public struct SettingsError: Error, Sendable, Hashable {
    /// The setting, e.g. `spn` or `headers.X-User`.
    public var key: String
    /// What is wrong and what to write instead.
    public var message: String

    /// Creates a settings error.
    public init(key: String, message: String) {
        self.key = key
        self.message = message
    }
}

/// Severity of a log line.
public enum LogLevel: Int, Sendable, Hashable, Comparable {
    case debug, info, notice, warning, error

    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The host's log, handed to handlers. Never log tokens, tickets, keys or passwords.
public struct PluginLogger: Sendable {
    private let sink: @Sendable (LogLevel, String, [String: String]) -> Void

    /// Creates a logger writing to `sink` (the host supplies it; tests may collect lines).
    public init(_ sink: @escaping @Sendable (LogLevel, String, [String: String]) -> Void) { self.sink = sink }

    /// Writes one line.
    public func log(_ level: LogLevel, _ message: String, _ metadata: [String: String] = [:]) { sink(level, message, metadata) }
    public func debug(_ message: String, _ metadata: [String: String] = [:]) { log(.debug, message, metadata) }
    public func info(_ message: String, _ metadata: [String: String] = [:]) { log(.info, message, metadata) }
    public func notice(_ message: String, _ metadata: [String: String] = [:]) { log(.notice, message, metadata) }
    public func warning(_ message: String, _ metadata: [String: String] = [:]) { log(.warning, message, metadata) }
    public func error(_ message: String, _ metadata: [String: String] = [:]) { log(.error, message, metadata) }
}

/// The host's metrics, handed to handlers.
public struct PluginMetrics: Sendable {
    private let counterSink: @Sendable (String, [String: String], Int) -> Void

    /// Creates metrics writing to `counter` (name, dimensions, amount).
    public init(counter: @escaping @Sendable (String, [String: String], Int) -> Void) { self.counterSink = counter }

    /// Adds `amount` to the counter `name` with these dimensions.
    public func increment(_ name: String, dimensions: [String: String] = [:], by amount: Int = 1) { counterSink(name, dimensions, amount) }
}

/// What a factory gets for one app: its name, its settings, and the host's services.
public struct HandlerContext: Sendable {
    /// The app's name.
    public var appName: String
    /// Every key under the app's `sso:` except `handler`.
    public var settings: [String: SettingValue]
    /// The host's log, with the app's name attached.
    public var logger: PluginLogger
    /// The host's metrics.
    public var metrics: PluginMetrics
    private let blockingExecutor: @Sendable (@escaping @Sendable () -> Void) -> Void

    /// Creates a context; `blockingExecutor` runs a closure on a thread where blocking is allowed.
    public init(
        appName: String,
        settings: [String: SettingValue],
        logger: PluginLogger,
        metrics: PluginMetrics,
        blockingExecutor: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void
    ) {
        self.appName = appName
        self.settings = settings
        self.logger = logger
        self.metrics = metrics
        self.blockingExecutor = blockingExecutor
    }

    /// Runs blocking work (file reads, calls into C libraries that may wait on the network) off the event
    /// loops, on the host's thread pool, and returns its result.
    public func runBlocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            blockingExecutor {
                continuation.resume(with: Result { try work() })
            }
        }
    }
}

/// What a plugin's entry point returns: its name, version and handler factories.
///
/// A plugin exports two C functions, which the scaffold writes for you:
/// ```swift
/// @_cdecl("sallyport_plugin_abi")
/// public func sallyportPluginABI() -> Int64 { PluginABI.stamp }
///
/// @_cdecl("sallyport_plugin_entry")
/// public func sallyportPluginEntry() -> UnsafeMutableRawPointer {
///     PluginRegistration(name: "example", version: "1.0.0", factories: [ExampleFactory()]).retainedPointer()
/// }
/// ```
public final class PluginRegistration: Sendable {
    /// The plugin's name, for `sallyport plugins list` and logs.
    public let name: String
    /// The plugin's own version string.
    public let version: String
    /// The handlers it provides.
    public let factories: [any SSOHandlerFactory]

    /// Creates a registration.
    public init(name: String, version: String, factories: [any SSOHandlerFactory]) {
        self.name = name
        self.version = version
        self.factories = factories
    }

    /// The registration as the raw pointer `sallyport_plugin_entry` returns (the host takes ownership).
    public func retainedPointer() -> UnsafeMutableRawPointer {
        Unmanaged.passRetained(self).toOpaque()
    }
}
