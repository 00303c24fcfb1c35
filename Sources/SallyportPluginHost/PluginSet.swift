public import Logging
import NIOPosix
public import SallyportConfig
public import SallyportPluginAPI
public import SallyportSSO

/// A connector's plugins: each library in a plugin host process of its own (``PluginHost``), or, when the
/// connector's `plugins.inProcess` names it, loaded into the connector itself.
public final class PluginSet: Sendable {
    /// The built-in handlers plus every plugin handler that is available.
    public let catalog: HandlerCatalog
    /// What loaded (`path` is the library), and what did not and why.
    public let loaded: [PluginLoader.Loaded]
    public let failures: [PluginLoader.Failure]
    /// The log level of each plugin handler, by handler name, where `plugins.logLevel` sets one.
    public let logLevels: [String: LogLevel]
    let hosts: [PluginHost]

    init(catalog: HandlerCatalog, loaded: [PluginLoader.Loaded], failures: [PluginLoader.Failure], logLevels: [String: LogLevel], hosts: [PluginHost]) {
        self.catalog = catalog
        self.loaded = loaded
        self.failures = failures
        self.logLevels = logLevels
        self.hosts = hosts
    }

    /// No plugins: the built-in handlers.
    public static let none = PluginSet(catalog: .builtIn, loaded: [], failures: [], logLevels: [:], hosts: [])

    /// Starts the plugins `settings` describes (hosts in parallel) on top of `base`.
    public static func start(_ settings: PluginSettings, base: HandlerCatalog = .builtIn, logger: Logger) async -> PluginSet {
        var catalog = base
        var loaded: [PluginLoader.Loaded] = []
        var failures: [PluginLoader.Failure] = []
        var levels: [String: LogLevel] = [:]
        let files: [String]
        switch PluginLoader.libraries(in: settings.directory) {
        case .success(let found): files = found
        case .failure(let failure): return PluginSet(catalog: base, loaded: [], failures: [failure], logLevels: [:], hosts: [])
        }
        let isolated = files.filter { !settings.inProcess.contains($0) }
        let hosts = isolated.map { file in
            var hostLogger = logger
            hostLogger[metadataKey: "library"] = "\(file)"
            return PluginHost(library: settings.directory + "/" + file, logger: hostLogger)
        }
        let started = await withTaskGroup(of: (Int, Result<PluginHost.Hello, PluginLoader.Failure>).self) { group in
            for (index, host) in hosts.enumerated() { group.addTask { (index, await host.start()) } }
            var results: [Int: Result<PluginHost.Hello, PluginLoader.Failure>] = [:]
            for await (index, result) in group { results[index] = result }
            return results
        }
        var running: [PluginHost] = []
        // In file name order, as a connector loading them in process would: the first of a name wins.
        for file in files {
            let path = settings.directory + "/" + file
            let level = settings.logLevels[file].flatMap(Self.level)
            let added: (plugin: String, version: String, handlers: [String])
            if let index = isolated.firstIndex(of: file) {
                switch started[index]! {
                case .failure(let failure):
                    failures.append(failure)
                    continue
                case .success(let hello):
                    running.append(hosts[index])
                    var names: [String] = []
                    for info in hello.handlers {
                        let factory = RemoteFactory(host: hosts[index], info: info, logLevel: level ?? .debug)
                        if let problem = Self.add(factory, plugin: hello.plugin, to: &catalog) {
                            failures.append(.init(path: path, reason: problem))
                        } else {
                            names.append(info.name)
                        }
                    }
                    added = (hello.plugin, hello.version, names)
                }
            } else {
                switch PluginLoader.loadLibrary(path: path) {
                case .failure(let failure):
                    failures.append(failure)
                    continue
                case .success(let registration):
                    var names: [String] = []
                    for factory in registration.factories {
                        if let problem = Self.add(factory, plugin: registration.name, to: &catalog) {
                            failures.append(.init(path: path, reason: problem))
                        } else {
                            names.append(factory.name)
                        }
                    }
                    added = (registration.name, registration.version, names)
                }
            }
            if let level { for name in added.handlers { levels[name] = level } }
            loaded.append(.init(path: path, name: added.plugin, version: added.version, handlers: added.handlers, isolated: isolated.contains(file)))
        }
        // Hosts whose handlers were all refused are not needed.
        for host in hosts where !running.contains(where: { $0 === host }) { host.stop() }
        return PluginSet(catalog: catalog, loaded: loaded, failures: failures, logLevels: levels, hosts: running)
    }

    /// Stops every plugin host.
    public func stop() {
        for host in self.hosts { host.stop() }
    }

    /// Adds a handler unless its name is invalid or taken; returns the problem otherwise.
    static func add(_ factory: any SSOHandlerFactory, plugin: String, to catalog: inout HandlerCatalog) -> String? {
        guard PluginLoader.isValidName(factory.name) else { return "handler name \"\(factory.name)\" is not lowercase letters, digits and -; skipped" }
        guard catalog.add(factory, plugin: plugin) else { return "handler \"\(factory.name)\" is already provided (built in or by an earlier plugin); skipped" }
        return nil
    }

    static func level(_ name: String) -> LogLevel? {
        switch name {
        case "debug": .debug
        case "info": .info
        case "notice": .notice
        case "warning": .warning
        case "error": .error
        default: nil
        }
    }
}
