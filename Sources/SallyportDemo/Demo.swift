import Foundation
public import Logging
import NIOCore
import NIOPosix
import SallyportConfig
import SallyportConnector
import SallyportPKI
import SallyportRelay
public import ServiceLifecycle
import Synchronization

/// `sallyport demo`: a relay, a connector and a sample app in one process, with throwaway TLS material.
public struct Demo: Service {
    /// Public HTTPS port of the relay.
    public var publicPort: Int
    /// Where the throwaway files go; a fresh temporary directory when nil.
    public var directory: String?
    let logger: Logger

    /// Creates the demo.
    public init(publicPort: Int = 8443, directory: String? = nil, logger: Logger) {
        self.publicPort = publicPort
        self.directory = directory
        self.logger = logger
    }

    /// Runs until graceful shutdown (SIGINT or SIGTERM).
    public func run() async throws {
        let logger = self.logger
        let directory = try self.directory ?? Self.makeTemporaryDirectory()
        let pki = try ThrowawayPKI.write(to: directory, extraPublicNames: ["hello.localhost"], connectorName: "demo-connector")
        let appsDirectory = (directory as NSString).appendingPathComponent("apps")
        try FileManager.default.createDirectory(atPath: appsDirectory, withIntermediateDirectories: true)

        // The sample app comes up first so its port can go into the app file.
        let backendPort = Mutex<Int?>(nil)
        let backendReady = AsyncStream<Int>.makeStream()
        let backend = SampleBackend(logger: logger) { port in
            backendPort.withLock { $0 = port }
            backendReady.continuation.yield(port)
            backendReady.continuation.finish()
        }

        let relayFile = (directory as NSString).appendingPathComponent("relay.yaml")
        try """
            # Written by `sallyport demo`.
            public:
              listen: 127.0.0.1:\(self.publicPort)
              certificates:
                - certificate: \(pki.publicCertificate)
                  key: \(pki.publicKey)
            tunnel:
              listen: 127.0.0.1:0
              certificate: \(pki.tunnelCertificate)
              key: \(pki.tunnelKey)
              clientCA: \(pki.tunnelCA)
            apps: \(appsDirectory)
            reloadInterval: 1s
            drainTimeout: 5s

            """.write(toFile: relayFile, atomically: true, encoding: .utf8)
        let relayConfig = try ConfigLoader.loadRelay(file: relayFile)

        let ready = AsyncStream<Int>.makeStream()
        let relay = RelayService(config: relayConfig, logger: logger) { _, tunnelPort in
            ready.continuation.yield(tunnelPort)
            ready.continuation.finish()
        }

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                var iterator = backendReady.stream.makeAsyncIterator()
                guard let port = await iterator.next() else { return }
                try """
                    # Written by `sallyport demo`: the sample app, published at https://hello.localhost:\(self.publicPort)/
                    name: hello
                    externalURL: https://hello.localhost:\(self.publicPort)/
                    internalURL: http://127.0.0.1:\(port)/
                    connectorGroup: default
                    preAuthentication: passthrough
                    sso:
                      handler: passthrough

                    """.write(toFile: (appsDirectory as NSString).appendingPathComponent("hello.yaml"), atomically: true, encoding: .utf8)

                var tunnelPorts = ready.stream.makeAsyncIterator()
                guard let tunnelPort = await tunnelPorts.next() else { return }
                relay.catalog.reload()
                let connectorFile = (directory as NSString).appendingPathComponent("connector.yaml")
                try """
                    # Written by `sallyport demo`.
                    relay: localhost:\(tunnelPort)
                    name: demo-connector
                    group: default
                    certificate: \(pki.connectorCertificate)
                    key: \(pki.connectorKey)
                    relayCA: \(pki.tunnelCA)

                    """.write(toFile: connectorFile, atomically: true, encoding: .utf8)
                let connector = ConnectorService(config: try ConfigLoader.loadConnector(file: connectorFile), logger: logger)
                // Wait until the connector holds the app, then tell the user.
                let announce = Task {
                    while connector.apps.app(named: "hello") == nil {
                        try await Task.sleep(for: .milliseconds(50))
                    }
                    Self.say(
                        """

                        Sallyport demo is running.
                          App:      https://hello.localhost:\(self.publicPort)/
                          Try:      curl --cacert \(pki.publicCA) https://hello.localhost:\(self.publicPort)/
                          Files:    \(directory)  (edit apps/hello.yaml: the relay reloads it)
                          Stop:     Ctrl-C

                        """
                    )
                }
                defer { announce.cancel() }
                // Ends with the connector (which drains first on shutdown).
                let renewal = Task { try await connector.kerberosRenewal.run() }
                defer { renewal.cancel() }
                try await connector.run()
            }
            group.addTask { try await backend.run() }
            group.addTask {
                // Ends with the relay (which drains first on shutdown).
                let reload = Task { try await relay.appReload.run() }
                defer { reload.cancel() }
                try await relay.run()
            }
            try await group.next()
            group.cancelAll()
        }
    }

    /// Prints to standard output right away (it may be a pipe).
    static func say(_ text: String) {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    static func makeTemporaryDirectory() throws -> String {
        let path = (NSTemporaryDirectory() as NSString).appendingPathComponent("sallyport-demo-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}
