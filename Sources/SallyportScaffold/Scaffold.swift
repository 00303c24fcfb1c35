import Foundation

/// Writes a new SSO handler plugin package: a handler with its settings type, the two C entry points,
/// a test, and build instructions.
public struct Scaffold: Sendable {
    /// The handler's name, used in `sso.handler` and as the package name: lowercase letters, digits, `-`.
    public var name: String
    /// Where the package is written (created; must not exist or be empty).
    public var output: String
    /// How the package refers to Sallyport: a path to its checkout.
    public var sallyportPath: String

    /// A problem with the request; the message says what to do.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Creates a scaffold request.
    public init(name: String, output: String, sallyportPath: String) {
        self.name = name
        self.output = output
        self.sallyportPath = sallyportPath
    }

    /// `my-handler` → `MyHandler`.
    public var moduleName: String {
        name.split(separator: "-").map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
    }

    /// SwiftPM's identity of the Sallyport package: its directory's name, lowercased.
    var sallyportIdentity: String {
        URL(fileURLWithPath: sallyportPath).standardizedFileURL.lastPathComponent.lowercased()
    }

    /// Writes the files and returns their paths.
    @discardableResult
    public func write() throws -> [String] {
        // The rule connectors apply to handler names (HandlerCatalog.isValidName); this module has no dependencies.
        let scalars = name.unicodeScalars
        guard let first = scalars.first, ("a"..."z").contains(first), scalars.count <= 63, !name.hasSuffix("-"),
            scalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" })
        else {
            throw Failure(description: "the handler name must be 1 to 63 lowercase letters, digits and \"-\", starting with a letter (got \"\(name)\")")
        }
        guard FileManager.default.fileExists(atPath: sallyportPath + "/Sources/SallyportPluginAPI") else {
            throw Failure(description: "\(sallyportPath) is not a Sallyport checkout (no Sources/SallyportPluginAPI); pass --sallyport-path")
        }
        let fileManager = FileManager.default
        if let existing = try? fileManager.contentsOfDirectory(atPath: output), !existing.isEmpty {
            throw Failure(description: "\(output) exists and is not empty; choose another --output")
        }
        let module = moduleName
        let files: [(String, String)] = [
            ("Package.swift", packageManifest(module: module)),
            ("Sources/\(module)/\(module).swift", handlerSource(module: module)),
            ("Sources/\(module)/Entry.swift", entrySource(module: module)),
            ("Tests/\(module)Tests/\(module)Tests.swift", testSource(module: module)),
            ("README.md", readme(module: module)),
            (".gitignore", ".build/\nPackage.resolved\n"),
        ]
        var written: [String] = []
        for (relative, contents) in files {
            let path = output + "/" + relative
            try fileManager.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try contents.write(toFile: path, atomically: true, encoding: .utf8)
            written.append(path)
        }
        return written
    }

    func packageManifest(module: String) -> String {
        let absolute = URL(fileURLWithPath: sallyportPath).standardizedFileURL.path
        return """
            // swift-tools-version:6.0
            // A Sallyport SSO handler plugin. Build: swift build -c release --product \(module)
            // Install: copy .build/release/lib\(module).so into the connector's plugins directory.
            import PackageDescription

            let package = Package(
                name: "\(name)",
                platforms: [.macOS(.v15)],
                products: [
                    .library(name: "\(module)", type: .dynamic, targets: ["\(module)"]),
                ],
                dependencies: [
                    // The Sallyport the plugin is built for: it must be the version (and Swift compiler) of the
                    // connector that loads it. A checkout by path, or by URL with an exact version.
                    .package(path: "\(absolute)"),
                ],
                targets: [
                    .target(
                        name: "\(module)",
                        dependencies: [.product(name: "SallyportPluginAPI", package: "\(sallyportIdentity)")]
                    ),
                    .testTarget(
                        name: "\(module)Tests",
                        dependencies: ["\(module)", .product(name: "SallyportPluginAPI", package: "\(sallyportIdentity)")]
                    ),
                ]
            )

            """
    }

    func handlerSource(module: String) -> String {
        """
        import SallyportPluginAPI

        /// The `\(name)` handler's settings, read from the app file's `sso:` section:
        ///
        /// ```yaml
        /// sso:
        ///   handler: \(name)
        ///   header: X-\(module)-User
        /// ```
        public struct \(module)Settings: Decodable, Sendable, Equatable {
            /// The request header that carries the user's principal name.
            public var header: String
        }

        /// Makes the handler for each app whose `sso.handler` is `\(name)`.
        public struct \(module)Factory: SSOHandlerFactory {
            public let name = "\(name)"
            public let requiresIdentity = true

            public init() {}

            public func makeHandler(context: HandlerContext) throws -> any SSOHandler {
                // Every problem at once (wrong kinds, missing and unknown keys); Sallyport reports each with the
                // app file's name, line and column.
                let settings = try context.decodeSettings(\(module)Settings.self)
                guard !settings.header.isEmpty, settings.header.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else {
                    throw SettingsError(key: "header", message: "must be a header name of letters, digits and - (got \\"\\(settings.header)\\")")
                }
                context.logger.info("\(name) handler ready", ["header": settings.header])
                return \(module)Handler(settings: settings, logger: context.logger, metrics: context.metrics)
            }
        }

        /// Sets the configured header to the user's principal name. Replace with your own logic.
        public struct \(module)Handler: SSOHandler {
            let settings: \(module)Settings
            let logger: PluginLogger
            let metrics: PluginMetrics

            public func prepare(_ request: inout BackendRequest, identity: Identity?, attempt: Int) async -> RequestDecision {
                guard let identity else {
                    return .refuse(Refusal(status: 502, message: "Sign-in to this application is misconfigured.", reason: "no identity: the app must use oidc or jwt"))
                }
                // `set` removes every spelling a client may have sent (case, _ for -) before setting the value.
                request.headers.set(settings.header, identity.userPrincipalName)
                metrics.increment("requests")  // exported as sallyport_sso_requests_total{plugin, handler, app}
                return .proceed
            }

            /// Sees the backend's answer before the user does. Here: a backend that still asks for credentials
            /// has its challenge removed (the user's browser cannot answer it), and the refusal is counted.
            public func inspect(_ response: inout BackendResponse, request: BackendRequest, identity: Identity?, attempt: Int) async -> ResponseDecision {
                guard response.status == 401 else { return .deliver }
                response.headers.remove("WWW-Authenticate")
                metrics.increment("backend_refusals")
                logger.warning("the backend refused the user", ["user": identity?.userPrincipalName ?? "-"])
                return .deliver
            }
        }

        """
    }

    func entrySource(module: String) -> String {
        """
        import SallyportPluginAPI

        // The two C symbols Sallyport's connector looks up after loading the library. Keep them as they are.

        /// The plugin API and compiler this plugin was built with; the connector refuses a mismatch.
        @_cdecl("sallyport_plugin_abi")
        public func sallyportPluginABI() -> Int64 { PluginABI.stamp }

        /// The plugin's handlers.
        @_cdecl("sallyport_plugin_entry")
        public func sallyportPluginEntry() -> UnsafeMutableRawPointer {
            PluginRegistration(name: "\(name)", version: "0.1.0", factories: [\(module)Factory()]).retainedPointer()
        }

        """
    }

    func testSource(module: String) -> String {
        """
        import SallyportPluginAPI
        import Synchronization
        import Testing

        @testable import \(module)

        /// Collects what a handler logs and counts, as the connector would receive it.
        final class Recorder: Sendable {
            let lines = Mutex<[(LogLevel, String)]>([])
            let counters = Mutex<[String: Int]>([:])

            var logger: PluginLogger { PluginLogger { level, message, _ in self.lines.withLock { $0.append((level, message)) } } }
            var metrics: PluginMetrics { PluginMetrics(counter: { name, _, amount in self.counters.withLock { $0[name, default: 0] += amount } }) }
        }

        @Suite struct \(module)Tests {
            let alice = Identity(userPrincipalName: "alice@corp.example", subject: "s-1", issuer: "https://idp", provider: "corp")
            let recorder = Recorder()

            func handler(_ settings: SettingsMap) throws -> any SSOHandler {
                let context = HandlerContext(
                    appName: "test", settings: settings, logger: recorder.logger, metrics: recorder.metrics, blockingExecutor: { $0() }
                )
                return try \(module)Factory().makeHandler(context: context)
            }

            @Test func setsTheHeaderAndRemovesSpoofedCopies() async throws {
                var request = BackendRequest(method: "GET", path: "/")
                request.headers.append("x_\(module.lowercased())_user", "mallory")
                let decision = try await handler(["header": .string("X-\(module)-User")]).prepare(&request, identity: alice, attempt: 1)
                #expect(decision == .proceed)
                #expect(request.headers.values(named: "X-\(module)-User") == ["alice@corp.example"])
                #expect(request.headers.count == 1)
                #expect(recorder.counters.withLock { $0 } == ["requests": 1])
            }

            @Test func aBackendChallengeIsRemovedAndCounted() async throws {
                let handler = try handler(["header": .string("X-\(module)-User")])
                var response = BackendResponse(status: 401, headers: HeaderFields([.init(name: "WWW-Authenticate", value: "Basic realm=x")]))
                let request = BackendRequest(method: "GET", path: "/")
                #expect(await handler.inspect(&response, request: request, identity: alice, attempt: 1) == .deliver)
                #expect(response.headers["WWW-Authenticate"] == nil)
                #expect(recorder.counters.withLock { $0 } == ["backend_refusals": 1])
                #expect(recorder.lines.withLock { $0.map(\\.1) }.contains("the backend refused the user"))
            }

            @Test func badSettingsAreAllReportedWithTheirKeys() throws {
                #expect(throws: SettingsErrors([
                    SettingsError(key: "header", message: "required setting is missing"),
                    SettingsError(key: "extra", message: "unknown setting; known here: header"),
                ])) {
                    try handler(["extra": .int(1)])
                }
                #expect(throws: SettingsError.self) { try handler(["header": .string("X Y")]) }
            }
        }

        """
    }

    func readme(module: String) -> String {
        """
        # \(name): a Sallyport SSO handler

        Scaffolded by `swift package scaffold-sso-handler`. See Sallyport's `docs/plugins.md` for the whole guide.

        ```sh
        swift test                                   # the handler's own tests
        swift build -c release --product \(module)   # builds .build/release/lib\(module).so
        sallyport plugins list --directory .build/release   # checks that a connector can load it
        ```

        Install: copy `.build/release/lib\(module).so` into the connector's `plugins` directory (connector config
        key `plugins`) and restart the connector. Use it in an app file:

        ```yaml
        preAuthentication: oidc
        sso:
          handler: \(name)
          header: X-\(module)-User
        ```

        The plugin must be built against the same Sallyport version, with the same Swift compiler, as the
        connector that loads it; the connector refuses anything else with a message saying which.

        """
    }
}
