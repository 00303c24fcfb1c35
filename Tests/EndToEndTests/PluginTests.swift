import Foundation
import SallyportTesting
import Testing

extension EndToEnd {
    /// SSO handler plugins: built by SwiftPM from real packages, loaded by a real connector, seen at nginx.
    @Suite("SSO handler plugins")
    struct PluginTests {
        /// The Sallyport checkout these tests run in.
        static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

        static let jwtProvider = """
            identityProviders:
              api:
                type: jwt
                issuers:
                  - issuer: https://issuer.test
                    jwksFile: jwks.json
                audiences: [sallyport-test]
            """

        /// A relay with a JWT provider whose keys the test makes, and nginx behind it.
        static func start(hosts: [String]) async throws -> (Deployment, Nginx, TestIssuer, TestDirectory) {
            let nginxDirectory = try TestDirectory(prefix: "sallyport-plugin-backend")
            let nginx = try await Nginx.start(directory: nginxDirectory)
            let deployment = try Deployment(hosts: hosts, relayExtra: jwtProvider)
            let issuer = try TestIssuer(issuer: "https://issuer.test", jwksFile: deployment.directory.file("jwks.json"))
            return (deployment, nginx, issuer, nginxDirectory)
        }

        @Test("The guide's path: scaffold, build, load into a connector, and the handler's header reaches nginx; ABI mismatch refused")
        func scaffoldBuildLoad() async throws {
            let work = try TestDirectory(prefix: "sallyport-scaffold")
            defer { work.remove() }
            // Scaffold with the command plugin, as docs/plugins.md says (own scratch path: the test run holds .build).
            try await SwiftPackage.run(
                [
                    "package", "--scratch-path", work.file("scaffold-build"), "--allow-writing-to-package-directory",
                    "--allow-writing-to-directory", work.path, "scaffold-sso-handler", "--name", "greeting", "--output", work.file("greeting"),
                ],
                in: Self.repository, log: work.file("scaffold.log")
            )
            // The scaffold's own test passes as written.
            let tested = try await SwiftPackage.run(["test"], in: work.file("greeting"), log: work.file("test.log"))
            #expect(tested.contains("passed"))
            // Compiler warnings name a file and line; SwiftPM's own notes about Sallyport's system library
            // (pkg-config's -isystem for MIT Kerberos headers) are not the scaffold's.
            let compilerWarnings = tested.split(separator: "\n").filter { $0.contains(": warning:") }
            #expect(compilerWarnings.isEmpty, "the scaffold compiles without warnings: \(compilerWarnings)")
            let library = try await SwiftPackage.buildLibrary("Greeting", in: work.file("greeting"), log: work.file("build.log"))
            let plugins = work.file("plugins")
            try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: library, toPath: plugins + "/libGreeting.so")

            let (deployment, nginx, issuer, nginxDirectory) = try await Self.start(hosts: ["greet", "misconfigured", "plain"])
            defer { nginxDirectory.remove() }
            try deployment.writeApp(
                name: "greet", internalURL: nginx.baseURL + "/",
                auth: ["preAuthentication: jwt", "sso:", "  handler: greeting", "  header: X-Greeting-User"]
            )
            // Settings the handler refuses: only this app is affected, and the log names file, line and key.
            try deployment.writeApp(name: "misconfigured", internalURL: nginx.baseURL + "/", auth: ["preAuthentication: jwt", "sso:", "  handler: greeting"])
            try deployment.writeApp(name: "plain", internalURL: nginx.baseURL + "/")
            try await deployment.startRelay()
            let connector = try await deployment.startConnector(plugins: plugins)
            #expect(connector.log().contains("plugin loaded"))

            let token = try await issuer.token()
            let greeted = try await Curl.run(
                deployment.url("greet", "/headers"), caFile: deployment.caFile, headers: ["Authorization: Bearer \(token)", "X_Greeting_User: mallory"]
            )
            #expect(greeted.status == 200)
            #expect(greeted.body.lowercased().contains("x-greeting-user: alice@corp.example.test"))
            #expect(!greeted.body.contains("mallory"))
            let misconfigured = try await Curl.run(deployment.url("misconfigured", "/headers"), caFile: deployment.caFile, headers: ["Authorization: Bearer \(token)"])
            #expect(misconfigured.status == 502)
            #expect(misconfigured.body.contains("Single sign-on to this application is not working"))
            #expect(connector.log().contains("misconfigured.yaml:6:1: sso.header: required"))
            #expect(try await Curl.run(deployment.url("plain", "/headers"), caFile: deployment.caFile).status == 200)
            // The scaffold's inspect rewrites the response head: the backend's challenge, which the user could
            // not answer, is removed (framing stays the backend's), and the handler's metric is exported.
            let challenged = try await Curl.run(deployment.url("greet", "/challenge"), caFile: deployment.caFile, headers: ["Authorization: Bearer \(token)"])
            #expect(challenged.status == 401 && challenged.body == "challenge\n", "\(challenged.status) \(challenged.body)")
            #expect(challenged.header("WWW-Authenticate") == nil && challenged.header("Content-Length") == "10", "\(challenged.headers)")

            // config validate with the connector file checks plugin handlers' settings offline.
            let validate = try ChildProcess.launch(
                deployment.binary, ["config", "validate", deployment.appsDirectory, "--connector", deployment.connectorConfig()],
                logFile: work.file("validate.log")
            )
            #expect(await validate.waitForExit(timeout: .seconds(30)) == 1)
            #expect(validate.log().contains("misconfigured.yaml:6:1: sso.header: required"), "\(validate.log())")

            // The same plugin built for another API version is refused with a message saying why.
            let entry = work.file("greeting/Sources/Greeting/Entry.swift")
            let source = try String(contentsOfFile: entry, encoding: .utf8)
            try source.replacingOccurrences(of: "{ PluginABI.stamp }", with: "{ PluginABI.stamp + (1 << 32) }").write(toFile: entry, atomically: true, encoding: .utf8)
            let mismatched = try await SwiftPackage.buildLibrary("Greeting", in: work.file("greeting"), log: work.file("rebuild.log"))
            let other = work.file("other-plugins")
            try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: mismatched, toPath: other + "/libGreeting.so")
            let list = try ChildProcess.launch(deployment.binary, ["plugins", "list", "--directory", other], logFile: work.file("list.log"))
            #expect(await list.waitForExit(timeout: .seconds(30)) == 1)
            #expect(list.log().contains("built for plugin API 4"), "\(list.log())")
            #expect(list.log().contains("rebuild the plugin against this Sallyport version"))

            await nginx.stop()
            await deployment.shutdown()
        }

        @Test("The example plugin answers a 401 challenge by sending the request again; broken plugins affect only their apps")
        func challengeRetryAndIsolation() async throws {
            let example = Self.repository + "/Plugins/Examples/ChallengeSSO"
            let work = try TestDirectory(prefix: "sallyport-example-plugin")
            defer { work.remove() }
            let library = try await SwiftPackage.buildLibrary("ChallengeSSO", in: example, scratchPath: work.file("example-build"), log: work.file("build.log"))
            // The example's own tests, on the same build (they ran nowhere before).
            let tested = try await SwiftPackage.run(["test", "--scratch-path", work.file("example-build")], in: example, log: work.file("test.log"))
            let summary = tested.split(separator: "\n").last { $0.contains("Test run with") } ?? ""
            #expect(summary.contains("passed") && !summary.contains("with 0 tests"), "\(tested.suffix(2000))")
            let plugins = work.file("plugins")
            try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: library, toPath: plugins + "/libChallengeSSO.so")
            // A file that is no plugin at all, and one that names a handler nobody provides.
            try "not an ELF file".write(toFile: plugins + "/libBroken.so", atomically: true, encoding: .utf8)

            let (deployment, nginx, issuer, nginxDirectory) = try await Self.start(hosts: ["on401", "always", "ghost", "plain"])
            defer { nginxDirectory.remove() }
            try deployment.writeApp(
                name: "on401", internalURL: nginx.baseURL + "/",
                auth: ["preAuthentication: jwt", "sso:", "  handler: challenge", "  realm: payroll", "  sendAuthorization: on401"]
            )
            try deployment.writeApp(name: "always", internalURL: nginx.baseURL + "/", auth: ["preAuthentication: jwt", "sso:", "  handler: challenge", "  realm: hr"])
            try deployment.writeApp(name: "ghost", internalURL: nginx.baseURL + "/", auth: ["preAuthentication: jwt", "sso:", "  handler: broken-handler"])
            try deployment.writeApp(name: "plain", internalURL: nginx.baseURL + "/")
            try await deployment.startRelay()
            let connector = try await deployment.startConnector(plugins: plugins)
            #expect(connector.log().contains("libBroken.so"))
            #expect(connector.log().contains("plugin not loaded"))
            func challengeHits() -> [String] { nginx.accessLog().components(separatedBy: "\n").filter { $0.contains("GET /challenge") } }

            let token = try await issuer.token()
            let answered = try await Curl.run(
                deployment.url("on401", "/challenge"), caFile: deployment.caFile, headers: ["Authorization: Bearer \(token)"]
            )
            #expect(answered.status == 200, "\(answered.body)")
            #expect(answered.body.contains("Authorization: Example realm=payroll, user=alice@corp.example.test"))
            #expect(!answered.body.contains("Bearer"), "the client's credentials never reach the backend")
            let hits = challengeHits()
            #expect(hits.count == 2, "one challenge, one answer: \(hits)")
            #expect(hits.first?.contains(" 401 ") == true)
            #expect(hits.last?.contains(" 200 ") == true)

            let upFront = try await Curl.run(deployment.url("always", "/challenge"), caFile: deployment.caFile, headers: ["Authorization: Bearer \(token)"])
            #expect(upFront.status == 200)
            #expect(upFront.body.contains("Authorization: Example realm=hr, user=alice@corp.example.test"))
            #expect(challengeHits().count == 3, "sent with credentials the first time")

            // A POST is never replayed, and the handler knows it (canRetry is false): it sends the credentials
            // at once, so the backend sees the POST once and answers it.
            let post = try await Curl.run(deployment.url("on401", "/challenge"), caFile: deployment.caFile, headers: ["Authorization: Bearer \(token)"], data: "x=1")
            #expect(post.status == 200, "\(post.status) \(post.body)")
            let posts = nginx.accessLog().components(separatedBy: "\n").filter { $0.contains("POST /challenge") }
            #expect(posts.count == 1, "the backend saw the POST \(posts.count) times: \(posts)")
            #expect(posts.first?.contains(" 200 ") == true)

            let ghost = try await Curl.run(deployment.url("ghost", "/headers"), caFile: deployment.caFile, headers: ["Authorization: Bearer \(token)"])
            #expect(ghost.status == 502)
            #expect(connector.log().contains("no SSO handler \"broken-handler\""))
            #expect(try await Curl.run(deployment.url("plain", "/headers"), caFile: deployment.caFile).status == 200)

            let list = try ChildProcess.launch(deployment.binary, ["plugins", "list", "--directory", plugins], logFile: work.file("list.log"))
            #expect(await list.waitForExit(timeout: .seconds(30)) == 1)
            #expect(list.log().contains("plugin    challenge  (needs identity)  from challenge-sso 1.0.0"))
            #expect(list.log().contains("FAILED    \(plugins)/libBroken.so"))

            await nginx.stop()
            await deployment.shutdown()
        }
    }
}
