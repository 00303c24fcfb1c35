/// A handler setting as written in the app file under `sso:`.
public indirect enum SettingValue: Sendable, Hashable, Codable {
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case list([SettingValue])
    case map(SettingsMap)
    case null

    /// The value when it is a string.
    public var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }
}

/// A mapping of settings in the order the app file has them.
public struct SettingsMap: Sendable, Hashable, Codable, Sequence, ExpressibleByDictionaryLiteral {
    /// One key and its value.
    public struct Entry: Sendable, Hashable, Codable {
        public var key: String
        public var value: SettingValue

        public init(key: String, value: SettingValue) {
            self.key = key
            self.value = value
        }
    }

    /// The entries in file order.
    public private(set) var entries: [Entry]

    /// Creates a mapping of these entries, in this order (a repeated key keeps its first value).
    public init(_ entries: [Entry] = []) {
        var seen = Set<String>()
        self.entries = entries.filter { seen.insert($0.key).inserted }
    }

    public init(dictionaryLiteral elements: (String, SettingValue)...) {
        self.init(elements.map { Entry(key: $0.0, value: $0.1) })
    }

    /// The value of `key`, if present.
    public subscript(key: String) -> SettingValue? { self.entries.first { $0.key == key }?.value }

    /// The keys in file order.
    public var keys: [String] { self.entries.map(\.key) }
    public var count: Int { self.entries.count }
    public var isEmpty: Bool { self.entries.isEmpty }
    public func makeIterator() -> IndexingIterator<[Entry]> { self.entries.makeIterator() }
}

/// A setting the factory cannot accept: which key (dotted path below `sso`, e.g. `headers.X-User`, with `[i]`
/// for list items) and why. The connector adds the app file's name, line and column.
public struct SettingsError: Error, Sendable, Hashable, Codable {
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

/// Every problem found in an app's settings at once (what ``HandlerContext/decodeSettings(_:)`` throws; a
/// factory may throw it too).
public struct SettingsErrors: Error, Sendable, Hashable {
    /// The problems, in the order they were found.
    public var errors: [SettingsError]

    public init(_ errors: [SettingsError]) { self.errors = errors }
}

/// Severity of a log line.
public enum LogLevel: Int, Sendable, Hashable, Codable, Comparable {
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

/// The host's metrics, handed to handlers. They appear on the connector's `/metrics` as
/// `sallyport_sso_<name>_total` (counters) and `sallyport_sso_<name>_seconds` (durations) with the labels `plugin`, `handler` and `app` added; `name` is lowercase letters,
/// digits and `_`, and a name keeps the dimension names of its first use (others are dropped and logged).
public struct PluginMetrics: Sendable {
    private let counterSink: @Sendable (String, [String: String], Int) -> Void
    private let durationSink: @Sendable (String, [String: String], Double) -> Void

    /// Creates metrics writing to `counter` (name, dimensions, amount) and `duration` (name, dimensions, seconds).
    public init(
        counter: @escaping @Sendable (String, [String: String], Int) -> Void,
        duration: @escaping @Sendable (String, [String: String], Double) -> Void = { _, _, _ in }
    ) {
        self.counterSink = counter
        self.durationSink = duration
    }

    /// Adds `amount` to the counter `name` (exported as `sallyport_sso_<name>_total`).
    public func increment(_ name: String, dimensions: [String: String] = [:], by amount: Int = 1) { counterSink(name, dimensions, amount) }

    /// Records how long something took in the histogram `name` (exported as `sallyport_sso_<name>_seconds`).
    public func record(_ name: String, seconds: Double, dimensions: [String: String] = [:]) { durationSink(name, dimensions, seconds) }
}

/// What a factory gets for one app: its name, its settings, and the host's services.
public struct HandlerContext: Sendable {
    /// The app's name.
    public var appName: String
    /// Every key under the app's `sso:` except `handler`, in file order.
    /// ``decodeSettings(_:)`` reads them into a `Decodable` type.
    public var settings: SettingsMap
    /// The host's log, with the app's name attached.
    public var logger: PluginLogger
    /// The host's metrics.
    public var metrics: PluginMetrics
    private let blockingExecutor: @Sendable (@escaping @Sendable () -> Void) -> Void

    /// Creates a context; `blockingExecutor` runs a closure on a thread where blocking is allowed.
    public init(
        appName: String,
        settings: SettingsMap,
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
