public import ArgumentParser
import Foundation
import Logging
import Metrics
import Prometheus
import SallyportConfig
import SallyportOps
import SallyportKCD
import SallyportConnector
import SallyportDemo
import SallyportRelay
import SallyportPluginAPI
import SallyportPluginHost
import SallyportScaffold
import SallyportSSO
import SallyportTunnel
import SallyportWire
import ServiceLifecycle
import UnixSignals

import CSallyportSystem

@main
struct Sallyport: AsyncParsableCommand {
    static func main() async {
        // A proxy allocates and frees buffers on several threads; glibc's default of up to 8 arenas per core
        // keeps freed buffers resident. Two arenas keep memory flat under streaming load.
        if ProcessInfo.processInfo.environment["MALLOC_ARENA_MAX"] == nil { _ = csallyport_set_malloc_arena_max(2) }
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }

    static let configuration = CommandConfiguration(
        commandName: "sallyport",
        abstract: "Publish internal web apps through an outbound-only tunnel.",
        version: SallyportVersion.current,
        subcommands: [
            RelayCommand.self, ConnectorCommand.self, ConnectorsCommand.self, GroupsCommand.self, KCDCommand.self, DemoCommand.self, ConfigCommand.self,
            PluginsCommand.self, CheckCommand.self, DoctorCommand.self, PluginHostCommand.self,
        ]
    )
}

/// The plugin host process a connector starts for each plugin library (not for people to run).
struct PluginHostCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugin-host", abstract: "Run one plugin library for a connector (the connector starts this itself).", shouldDisplay: false
    )

    @Option(name: .long, help: "The plugin library.")
    var library: String

    func run() async throws {
        let status = await PluginHostProcess.run(library: self.library)
        if status != 0 { throw ExitCode(status) }
    }
}

struct LoggingOptions: ParsableArguments {
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Option(name: .long, help: "Log format: text (one line per event) or json (one object per line).")
    var logFormat: LogFormat = .text

    func makeLogger(_ label: String) -> Logger {
        self.makeLogger(label, recentEvents: nil)
    }

    /// The logger of a long-running service; its warnings and errors also go to `recentEvents` (the status page).
    func makeLogger(_ label: String, recentEvents: RecentEvents?) -> Logger {
        let (level, format) = (self.logLevel, self.logFormat)
        let journald = SallyportLogHandler.standardErrorIsJournal()
        LoggingSystem.bootstrap { label in
            let output = SallyportLogHandler(label: label, format: format, journald: journald, logLevel: level)
            guard let recentEvents else { return output }
            return MultiplexLogHandler([output, recentEvents.handler(label: label)])
        }
        return Logger(label: label)
    }
}

/// The process's metrics: one Prometheus registry that the admin listener serves, also behind swift-metrics,
/// so SSO handlers' counters land in the same place.
enum ProcessMetrics {
    static func bootstrap() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Loads a config file or exits (status 2) with every problem in it, one per line in `file:line:column: key: message` form.
func loadAllOrExit<T>(_ load: () -> Result<T, ConfigProblems>) -> T {
    switch load() {
    case .success(let value):
        return value
    case .failure(let problems):
        for error in problems.errors { FileHandle.standardError.write(Data("sallyport: \(error)\n".utf8)) }
        Foundation.exit(2)
    }
}

/// Loads a config file or exits with the error in `file:line:column: key: message` form.
func loadOrExit<T>(_ load: () throws(ConfigError) -> T) -> T {
    do {
        return try load()
    } catch {
        FileHandle.standardError.write(Data("sallyport: \(error)\n".utf8))
        Foundation.exit(2)
    }
}

struct RelayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay",
        abstract: "Run the relay: the public HTTPS edge and the tunnel listener.",
        subcommands: [RelayRun.self, RelayInitCommand.self],
        defaultSubcommand: RelayRun.self
    )
}

struct RelayRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run the relay (the default: `sallyport relay --config FILE`).")

    @Option(name: .long, help: "The relay's configuration file.")
    var config: String

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        // First, before any child process could inherit them: the sockets of sallyport-relay.socket, if any.
        let sockets: SystemdSockets
        do {
            sockets = try SystemdSockets.fromEnvironment()
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            throw ExitCode(2)
        }
        let config = loadAllOrExit { ConfigLoader.checkRelay(file: self.config) }
        let recentEvents = RecentEvents()
        let logger = self.logging.makeLogger("sallyport.relay", recentEvents: recentEvents)
        let relay = RelayService(
            config: config, logger: logger, metrics: RelayMetrics(registry: ProcessMetrics.bootstrap()), recentEvents: recentEvents, sockets: sockets
        )
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: relay), .init(service: relay.appReload), .init(service: HangupReload(relay: relay, logger: logger))],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }
}

/// Reloads the app directory and the listeners' certificates on SIGHUP.
struct HangupReload: Service {
    let relay: RelayService
    let logger: Logger

    func run() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            self.logger.info("SIGHUP: reloading apps and certificates")
            self.relay.catalog.reload()
            self.relay.reloadCertificates(force: true)
        }
    }
}

struct ConnectorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connector",
        abstract: "Run a connector: dial the relay and forward requests to internal apps.",
        subcommands: [ConnectorRun.self, ConnectorRegister.self],
        defaultSubcommand: ConnectorRun.self
    )
}

struct ConnectorRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run the connector (the default: `sallyport connector --config FILE`).")

    @Option(name: .long, help: "The connector's configuration file.")
    var config: String

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        let config = loadAllOrExit { ConfigLoader.checkConnector(file: self.config) }
        let recentEvents = RecentEvents()
        let logger = self.logging.makeLogger("sallyport.connector", recentEvents: recentEvents)
        // Kerberos: the connector's credentials come only from its keytab into memory caches. An empty default
        // cache makes any GSS call that would fall back to "the default credential" fail instead of acting as
        // whoever's tickets happen to be in /tmp/krb5cc_*.
        setenv("KRB5CCNAME", "MEMORY:sallyport-no-default-credential", 1)
        KerberosDefaults.requestForwardableTickets()
        var plugins = PluginSet.none
        if let settings = config.plugins {
            // Each plugin in a host process of its own unless plugins.inProcess names it. A plugin that does not
            // load is reported; only the apps that use its handlers are affected.
            plugins = await PluginSet.start(settings, logger: logger)
            for plugin in plugins.loaded {
                logger.info(
                    "plugin loaded",
                    metadata: [
                        "plugin": "\(plugin.name)", "version": "\(plugin.version)", "handlers": "\(plugin.handlers.joined(separator: ","))", "file": "\(plugin.path)",
                        "isolation": "\(plugin.isolated ? "plugin host process" : "in process")",
                    ]
                )
            }
            for failure in plugins.failures {
                logger.error("plugin not loaded; apps using its handlers answer 502", metadata: ["file": "\(failure.path)", "reason": "\(failure.reason)"])
            }
        }
        defer { plugins.stop() }
        // A certificate that expired while the connector was off cannot be renewed: say how to register again.
        do {
            _ = try Credentials(config: config)
        } catch {
            FileHandle.standardError.write(Data("sallyport connector: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let connector = ConnectorService(
            config: config, logger: logger, handlers: plugins.catalog, pluginLogLevels: plugins.logLevels, metrics: ConnectorMetrics(registry: ProcessMetrics.bootstrap()),
            recentEvents: recentEvents
        )
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: connector), .init(service: connector.kerberosRenewal), .init(service: connector.handlerRecovery),
                    .init(service: connector.registrationWatch, failureTerminationBehavior: .gracefullyShutdownGroup),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        do {
            try await group.run()
        } catch let refusal as ConnectorNotRegistered {
            // Removed (or replaced by `register --force`): dialling on would only be refused. A distinct status,
            // so the unit's RestartPreventExitStatus= stops systemd from starting it again.
            FileHandle.standardError.write(
                Data(
                    "sallyport connector: \(refusal)\nThis connector stops. To serve again, register it with a new token: on the relay, sallyport connectors token create --group GROUP; here, sudo -u sallyport sallyport connector register --force --relay \(config.relay) --token TOKEN\n"
                        .utf8
                )
            )
            throw ExitCode(ConnectorNotRegistered.exitStatus)
        }
    }
}

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run a relay, a connector and a sample app in one process, with throwaway certificates."
    )

    @Option(name: .long, help: "The relay's public HTTPS port.")
    var port: Int = 8443

    @Option(name: .long, help: "Directory for the throwaway certificates and config (default: a new temporary directory).")
    var directory: String?

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        let logger = self.logging.makeLogger("sallyport.demo")
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: Demo(publicPort: self.port, directory: self.directory, logger: logger))],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        do {
            try await group.run()
        } catch let error as ListenError {
            FileHandle.standardError.write(Data("sallyport demo: \(error)\nPick another port: sallyport demo --port 9443\n".utf8))
            throw ExitCode(1)
        }
    }
}

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Work with configuration files.",
        subcommands: [Validate.self]
    )

    struct Validate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a directory of app files (and optionally relay/connector files); exit non-zero on any error."
        )

        @Argument(help: "Directory of per-app YAML files (default: the `apps` directory of --relay).")
        var directory: String?

        @Option(name: .long, help: "Also check this relay configuration file and every file it names.")
        var relay: String?

        @Option(name: .long, help: "Also check this connector configuration file and every file it names.")
        var connector: String?

        func validate() throws {
            if self.directory == nil, self.relay == nil, self.connector == nil {
                throw ValidationError("give a directory of app files, --relay FILE or --connector FILE")
            }
        }

        func run() async throws {
            var errors: [String] = []
            var warnings: [String] = []
            var relayConfig: RelayConfig?
            if let relay = self.relay {
                switch ConfigLoader.checkRelay(file: relay) {
                case .success(let config):
                    relayConfig = config
                    let files = RelayFiles.check(config)
                    errors += files.errors.map { "\(relay): \($0)" }
                    warnings += files.warnings.map { "\(relay): \($0)" }
                case .failure(let problems):
                    errors += problems.errors.map { "\($0)" }
                }
            }
            let directory = self.directory ?? relayConfig?.appsDirectory
            var load = AppDirectoryLoad()
            if let directory {
                var isDirectory: ObjCBool = false
                if !FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) || !isDirectory.boolValue {
                    errors.append("\(ConfigError(file: directory, message: "not a directory of app files"))")
                }
                load = ConfigLoader.loadApps(directory: directory)
                errors += load.errors.map { "\($0)" }
                if self.relay == nil, load.apps.contains(where: { $0.preAuthentication.policy != nil }) {
                    print("note: apps use oidc or jwt; pass --relay FILE to check their identity providers too")
                }
                // With the relay file, apps are checked as the relay checks them (providers, templates).
                let checked = relayConfig.map { HandlerCatalog.checkOnRelay(load.apps, identityProviders: $0.identityProviders) }
                    ?? HandlerCatalog.builtIn.check(load.apps)
                errors += checked.errors.map { "\($0)" }
                load.apps = checked.apps
            }
            if let connector = self.connector {
                switch ConfigLoader.checkConnector(file: connector) {
                case .failure(let problems):
                    errors += problems.errors.map { "\($0)" }
                case .success(let config):
                    // With the connector file, SSO handlers from its plugins check their apps' settings too.
                    // and the kcd handler checks its SPNs against kerberos.allowedSPNs.
                    let files = ConnectorFiles.check(config)
                    errors += files.errors.map { "\(connector): \($0)" }
                    warnings += files.warnings.map { "\(connector): \($0)" }
                    var catalog = HandlerCatalog.builtIn
                    if let directory = config.pluginsDirectory {
                        let plugins = PluginLoader.load(directory: directory)
                        for failure in plugins.failures { print("plugin not loaded: \(failure)") }
                        catalog = plugins.catalog
                    }
                    catalog.replace(KCDSettingsFactory(allowedSPNs: config.kerberos.allowedSPNs))
                    for app in load.apps {
                        if case .failed(let failures)? = await catalog.make(for: app.forConnector, context: HandlerCatalog.validationContext) {
                            errors += failures.map { "\($0)" }
                        }
                    }
                }
            }
            for error in errors { print(error) }
            for warning in warnings { print("warning: \(warning)") }
            let apps = directory == nil ? "" : "; \(load.apps.count) app\(load.apps.count == 1 ? "" : "s") valid"
            if errors.isEmpty {
                print("ok" + (directory == nil ? "" : ": \(load.apps.count) app\(load.apps.count == 1 ? "" : "s") valid (\(load.apps.map(\.name).joined(separator: ", ")))"))
            } else {
                print("\(errors.count) error\(errors.count == 1 ? "" : "s")\(apps)")
                throw ExitCode(1)
            }
        }
    }
}

struct PluginsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins",
        abstract: "SSO handler plugins: list what a connector loads, or start a new one.",
        subcommands: [List.self, New.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Load the plugins a connector would load and list their handlers; exit non-zero if any fails."
        )

        @Option(name: .long, help: "A directory of plugins (*.so).")
        var directory: String?

        @Option(name: .long, help: "A connector configuration file; its `plugins` directory is listed.")
        var config: String?

        func run() async throws {
            var directory = self.directory
            if directory == nil, let file = self.config {
                directory = loadOrExit { () throws(ConfigError) in try ConfigLoader.loadConnector(file: file) }.pluginsDirectory
            }
            for factory in HandlerCatalog.builtIn.factories.values.sorted(by: { $0.name < $1.name }) {
                print("built-in  \(factory.name)\(factory.requiresIdentity ? "  (needs identity)" : "")")
            }
            guard let directory else {
                print("no plugins directory (pass --directory, or --config with a connector file that sets plugins)")
                return
            }
            let result = PluginLoader.load(directory: directory)
            for plugin in result.loaded {
                let handlers = plugin.handlers.compactMap { result.catalog.factories[$0] }
                for factory in handlers {
                    print("plugin    \(factory.name)\(factory.requiresIdentity ? "  (needs identity)" : "")  from \(plugin.name) \(plugin.version)  \(plugin.path)")
                }
                if handlers.isEmpty { print("plugin    (no handlers)  from \(plugin.name) \(plugin.version)  \(plugin.path)") }
            }
            for failure in result.failures {
                print("FAILED    \(failure.path): \(failure.reason)")
            }
            if !result.failures.isEmpty { throw ExitCode(1) }
        }
    }

    struct New: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a new SSO handler plugin package (what `swift package scaffold-sso-handler` does)."
        )

        @Argument(help: "The handler's name: lowercase letters, digits and -.")
        var name: String

        @Option(name: .long, help: "Where to write the package (default: ./NAME).")
        var output: String?

        @Option(name: .long, help: "The Sallyport checkout the plugin builds against.")
        var sallyportPath: String

        func run() async throws {
            let scaffold = Scaffold(name: self.name, output: self.output ?? self.name, sallyportPath: self.sallyportPath)
            do {
                let files = try scaffold.write()
                print("wrote \(files.count) files to \(scaffold.output)")
            } catch {
                FileHandle.standardError.write(Data("sallyport plugins new: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}
