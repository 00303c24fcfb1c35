import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import SallyportConfig
import SallyportConnector
import SallyportRelay
import SallyportWire
import ServiceLifecycle

/// A relay and its connectors in the test process, set up as an administrator does (`relay init`, a token,
/// `connector register`), on loopback ports: the forwarding layer tested in a second rather than through
/// processes. Apps are published at `https://127.0.0.1:PORT/<name>/`, routed by path prefix.
final class InProcessSallyport: Sendable {
    let directory: String
    let publicPort: Int
    let client: HTTPClient
    private let connectorGroups: [ServiceGroup]
    private let connectorsRunning: [Task<Void, any Error>]
    private let running: Task<Void, any Error>

    private init(
        directory: String, publicPort: Int, client: HTTPClient,
        connectorGroups: [ServiceGroup], connectorsRunning: [Task<Void, any Error>], running: Task<Void, any Error>
    ) {
        self.directory = directory
        self.publicPort = publicPort
        self.client = client
        self.connectorGroups = connectorGroups
        self.connectorsRunning = connectorsRunning
        self.running = running
    }

    static let logger: Logger = {
        var logger = Logger(label: "in-process")
        logger.logLevel = ProcessInfo.processInfo.environment["SALLYPORT_TEST_LOG"] == nil ? .critical : .debug
        return logger
    }()

    /// An app file's text for `name`, published at `/name/` and forwarded to `backend`; `extra` lines are added
    /// as they are (timeouts, limits).
    static func app(_ name: String, backend: Int, extra: String = "") -> String {
        """
        name: \(name)
        externalURL: https://127.0.0.1/\(name)/
        internalURL: http://127.0.0.1:\(backend)/\(name)/
        connectorGroup: default
        preAuthentication: passthrough
        sso:
          handler: passthrough
        \(extra)
        """
    }

    /// Starts a relay and `connectorCount` connectors with `apps` (name → file text), and waits until every
    /// connector holds every app.
    static func start(apps: [String: String], connectors connectorCount: Int = 1, client protocol: ClientProtocol = .http2) async throws -> InProcessSallyport {
        let directory = (NSTemporaryDirectory() as NSString).appendingPathComponent("sallyport-inprocess-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let relayDirectory = (directory as NSString).appendingPathComponent("relay")
        let initialised = try RelayInit(
            directory: relayDirectory, tunnelNames: ["127.0.0.1"], publicListen: "127.0.0.1:0", tunnelListen: "127.0.0.1:0",
            trialPublicNames: ["127.0.0.1"]
        ).run()
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: initialised.configFile))
        handle.seekToEndOfFile()
        // Tests run side by side: every port is a free one.
        handle.write(Data("drainTimeout: 2s\nadmin:\n  listen: 127.0.0.1:0\n".utf8))
        try handle.close()
        let relayConfig = try ConfigLoader.loadRelay(file: initialised.configFile)
        for (name, text) in apps {
            try text.write(toFile: (relayConfig.appsDirectory as NSString).appendingPathComponent("\(name).yaml"), atomically: true, encoding: .utf8)
        }
        let ports = AsyncStream<(Int, Int)>.makeStream()
        let relay = RelayService(config: relayConfig, logger: Self.logger) { publicPort, tunnelPort in
            ports.continuation.yield((publicPort, tunnelPort))
            ports.continuation.finish()
        }
        let relayGroup = ServiceGroup(services: [relay], gracefulShutdownSignals: [], logger: Self.logger)
        let relayRunning = Task {
            defer { ports.continuation.finish() }
            try await relayGroup.run()
        }
        var iterator = ports.stream.makeAsyncIterator()
        guard let (publicPort, tunnelPort) = await iterator.next() else {
            do { try await relayRunning.value } catch { throw HarnessFailure("the relay did not start: \(error)") }
            throw HarnessFailure("the relay did not start")
        }

        let admin = AdminClient(socket: relayConfig.adminSocket)
        var connectors: [ConnectorService] = []
        for index in 0..<connectorCount {
            let token = try RegistrationToken(parsing: try await admin.createToken(group: "default", expires: "10m").token)
            let registered = try await RegistrationClient(
                relay: HostPort(host: "127.0.0.1", port: tunnelPort), serverName: nil, token: token, name: "connector-\(index)", group: nil,
                directory: (directory as NSString).appendingPathComponent("connector-\(index)"), force: true
            ).run()
            connectors.append(ConnectorService(config: try ConfigLoader.loadConnector(file: registered.configFile), logger: Self.logger))
        }
        // A group each, so that a test can stop one connector (draining, as SIGTERM does).
        let connectorGroups = connectors.map { ServiceGroup(services: [$0], gracefulShutdownSignals: [], logger: Self.logger) }
        let connectorsRunning = connectorGroups.map { group in Task { try await group.run() } }
        let running = Task {
            for connector in connectorsRunning { _ = try? await connector.value }
            await relayGroup.triggerGracefulShutdown()
            try await relayRunning.value
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(initialised.trialPublicCA ?? "")
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.httpVersion = `protocol` == .http1 ? .http1Only : .automatic
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let sallyport = InProcessSallyport(
            directory: directory, publicPort: publicPort, client: client,
            connectorGroups: connectorGroups, connectorsRunning: connectorsRunning, running: running
        )
        let deadline = ContinuousClock.now + .seconds(20)
        while !connectors.allSatisfy({ connector in apps.keys.allSatisfy { connector.apps.app(named: $0) != nil } }) {
            guard ContinuousClock.now < deadline else { throw HarnessFailure("the connectors did not receive the apps within 20 s") }
            try await Task.sleep(for: .milliseconds(20))
        }
        return sallyport
    }

    /// The public URL of `path` (which starts with the app's `/name/`).
    func url(_ path: String) -> String { "https://127.0.0.1:\(self.publicPort)\(path)" }

    /// Stops connector `index` as SIGTERM does (it drains: the relay stops choosing it, its requests finish) and
    /// waits until it has stopped.
    func stopConnector(_ index: Int) async {
        await self.connectorGroups[index].triggerGracefulShutdown()
        _ = try? await self.connectorsRunning[index].value
    }

    /// Stops the connectors (draining), then the relay, and removes the files.
    func stop() async {
        try? await self.client.shutdown()
        for group in self.connectorGroups { await group.triggerGracefulShutdown() }
        _ = try? await self.running.value
        try? FileManager.default.removeItem(atPath: self.directory)
    }
}

struct HarnessFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body` with a backend serving `handler` and an in-process relay and connector publishing it as `app`,
/// then stops everything.
func withSallyport<T>(
    app name: String = "app", extra: String = "", connectors: Int = 1, client: ClientProtocol = .http2,
    backend handler: @escaping TestBackend.Handler,
    _ body: (InProcessSallyport, TestBackend) async throws -> T
) async throws -> T {
    let backend = try await TestBackend.start(handler)
    let serving = Task { try await backend.run() }
    let sallyport = try await InProcessSallyport.start(
        apps: [name: InProcessSallyport.app(name, backend: backend.port, extra: extra)], connectors: connectors, client: client
    )
    func stop() async {
        await sallyport.stop()
        await backend.close()
        // Exchanges still running (a backend that never answers) end with their task.
        serving.cancel()
        _ = try? await serving.value
    }
    do {
        let result = try await body(sallyport, backend)
        await stop()
        return result
    } catch {
        await stop()
        throw error
    }
}

/// How the test's client speaks to the relay.
enum ClientProtocol: String, Sendable, CaseIterable, CustomStringConvertible {
    case http1 = "HTTP/1.1"
    case http2 = "HTTP/2"
    var description: String { self.rawValue }
}
