import Foundation
import SallyportTesting
import Synchronization
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
            // A trusted plugin in the connector's own process (plugins.inProcess), as the guide shows.
            let connector = try await deployment.startConnector(extra: "plugins:\n  directory: \(plugins)\n  inProcess: [libGreeting.so]")
            #expect(connector.log().contains("plugin loaded") && connector.log().contains("isolation=in process"), "\(connector.log())")

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

            // The same plugin as built for plugin API 2 is refused with a message saying why and what to do.
            let entry = work.file("greeting/Sources/Greeting/Entry.swift")
            let source = try String(contentsOfFile: entry, encoding: .utf8)
            try source.replacingOccurrences(of: "{ PluginABI.stamp }", with: "{ PluginABI.stamp - (1 << 32) }").write(toFile: entry, atomically: true, encoding: .utf8)
            let mismatched = try await SwiftPackage.buildLibrary("Greeting", in: work.file("greeting"), log: work.file("rebuild.log"))
            let other = work.file("other-plugins")
            try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: mismatched, toPath: other + "/libGreeting.so")
            let list = try ChildProcess.launch(deployment.binary, ["plugins", "list", "--directory", other], logFile: work.file("list.log"))
            #expect(await list.waitForExit(timeout: .seconds(30)) == 1)
            #expect(list.log().contains("built for plugin API 2, Swift"), "\(list.log())")
            #expect(list.log().contains("but this connector has plugin API 3"))
            #expect(list.log().contains("rebuild the plugin against this Sallyport version with the same Swift toolchain (in the plugin's package"))
            // A connector refuses it the same way, in the plugin host, and serves its other apps.
            let refusing = try await deployment.startConnector(name: "connector-2", plugins: other)
            #expect(refusing.log().contains("built for plugin API 2") && refusing.log().contains("plugin not loaded"), "\(refusing.log())")

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

        /// Sends requests to `apps` one after another until stopped; counts what did not get a 200.
        final class SteadyLoad: @unchecked Sendable {
            let failures = Mutex<[String]>([])
            let sent = Atomic<Int>(0)
            let stopping = Atomic<Bool>(false)
            var task: Task<Void, Never>?

            init(_ deployment: Deployment, apps: [String]) {
                self.task = Task {
                    var turn = 0
                    while !self.stopping.load(ordering: .relaxed) {
                        let app = apps[turn % apps.count]
                        turn += 1
                        let result = try? await Curl.run(deployment.url(app, "/headers"), caFile: deployment.caFile, timeout: 20)
                        self.sent.add(1, ordering: .relaxed)
                        if result?.status != 200 { self.failures.withLock { $0.append("\(app): \(result?.status ?? 0)") } }
                    }
                }
            }

            func stop() async -> (sent: Int, failures: [String]) {
                self.stopping.store(true, ordering: .relaxed)
                await self.task?.value
                return (self.sent.load(ordering: .relaxed), self.failures.withLock { $0 })
            }
        }

        @Test("Plugins in host processes: a crash, a hang and blocked threads cost only that plugin's requests; other apps serve throughout, the plugin recovers by itself; retries, typed settings, failed factories and metrics")
        func isolation() async throws {
            let work = try TestDirectory(prefix: "sallyport-faulty-plugin")
            defer { work.remove() }
            let library = try await SwiftPackage.buildLibrary(
                "FaultySSO", in: Self.repository + "/Tests/Plugins/FaultySSO", scratchPath: work.file("build"), log: work.file("build.log")
            )
            let plugins = work.file("plugins")
            try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: library, toPath: plugins + "/libFaultySSO.so")
            let flag = work.file("flag")

            let (deployment, nginx, _, nginxDirectory) = try await Self.start(hosts: ["crashy", "hangy", "blocky", "retry", "bad", "needs", "plain", "plain2"])
            defer { nginxDirectory.remove() }
            func faulty(_ lines: [String] = ["  label: ok"]) -> [String] { ["preAuthentication: passthrough", "sso:", "  handler: faulty"] + lines }
            try deployment.writeApp(name: "crashy", internalURL: nginx.baseURL + "/", auth: faulty())
            try deployment.writeApp(name: "hangy", internalURL: nginx.baseURL + "/", auth: faulty() + ["timeouts:", "  sso: 1s"])
            try deployment.writeApp(name: "blocky", internalURL: nginx.baseURL + "/", auth: faulty() + ["timeouts:", "  sso: 2s"])
            try deployment.writeApp(name: "retry", internalURL: nginx.baseURL + "/", auth: ["preAuthentication: passthrough", "sso:", "  handler: retry-always"])
            try deployment.writeApp(
                name: "bad", internalURL: nginx.baseURL + "/",
                auth: faulty(["  limits:", "    tries: many", "    extra: 1", "  modes: [fast, medium]"])
            )
            try deployment.writeApp(name: "needs", internalURL: nginx.baseURL + "/", auth: faulty(["  label: n", "  needsFile: \(flag)"]))
            try deployment.writeApp(name: "plain", internalURL: nginx.baseURL + "/")
            try deployment.writeApp(name: "plain2", internalURL: nginx.baseURL + "/")
            try await deployment.startRelay()
            let admin = try FreePort.next()
            let connector = try await deployment.startConnector(
                extra: "plugins:\n  directory: \(plugins)\n  logLevel: {libFaultySSO.so: debug}\nadmin:\n  listen: 127.0.0.1:\(admin)"
            )
            #expect(connector.log().contains("isolation=plugin host process"), "\(connector.log())")
            let ok = try await Curl.run(deployment.url("crashy", "/headers"), caFile: deployment.caFile)
            #expect(ok.status == 200 && ok.body.contains("X-Faulty: ok"), "\(ok.status) \(ok.body)")
            // The per-plugin log level lets the handler's debug lines through (the connector logs at info).
            #expect(connector.log().contains("faulty passed a request"), "plugins.logLevel: debug")

            let load = SteadyLoad(deployment, apps: ["plain", "plain2"])
            // A crash: only the crashing request fails, with a clear page; the log names the plugin and the site.
            let crashed = try await Curl.run(deployment.url("crashy", "/crash"), caFile: deployment.caFile)
            #expect(crashed.status == 502 && crashed.body.contains("stopped for a moment"), "\(crashed.status) \(crashed.body)")
            #expect(try await ConfigSyncTests.eventually(timeout: .seconds(10)) { connector.log().contains("plugin host started again") })
            let crashLine = connector.log().split(separator: "\n").first { $0.contains("plugin host ended;") } ?? ""
            #expect(crashLine.contains("plugin=faulty") && crashLine.contains("faulty plugin told to crash") && crashLine.contains("FaultySSO.swift"), "\(crashLine)")
            // The crashing plugin's apps recover by themselves.
            #expect(try await Curl.run(deployment.url("crashy", "/headers"), caFile: deployment.caFile).status == 200)
            // A crash whose process takes longer to end than the request's deadline (5 s here): the request gets its
            // 502 when the host reports the crash, not a 504 at the deadline. (CI once saw the backtracer outlast it.)
            let restarts = connector.log().components(separatedBy: "plugin host started again").count
            let exits = connector.log().components(separatedBy: "crashed plugin host exited").count
            let slowStarted = ContinuousClock.now
            let slow = try await Curl.run(deployment.url("crashy", "/slow-crash"), caFile: deployment.caFile)
            #expect(slow.status == 502 && slow.body.contains("stopped for a moment"), "\(slow.status) \(slow.body)")
            #expect(ContinuousClock.now - slowStarted < .seconds(3), "answered when the crash was reported")
            // A new host starts as soon as the crash is reported: the plugin's apps serve again within 2 s, while
            // the crashed process still writes its report (4 s); its end is logged when it comes, and it is reaped.
            #expect(try await ConfigSyncTests.eventually(timeout: .seconds(2)) {
                (try? await Curl.run(deployment.url("crashy", "/headers"), caFile: deployment.caFile))?.status == 200
            }, "the plugin's apps serve again within 2 s of its crash report")
            #expect(connector.log().components(separatedBy: "plugin host started again").count > restarts)
            // Every crashed host (this one and the first) ends and is logged.
            #expect(try await ConfigSyncTests.eventually(timeout: .seconds(30)) {
                let log = connector.log()
                let reported = log.components(separatedBy: "still writing its report").count
                return reported > 2 && log.components(separatedBy: "crashed plugin host exited").count == reported
            })
            let exitLines = connector.log().split(separator: "\n").filter { $0.contains("crashed plugin host exited") }
            #expect(exitLines.count > exits - 1)
            #expect(exitLines.contains { $0.contains("faulty plugin crashing slowly") }, "the report's first lines are logged with its exit: \(exitLines)")
            let hosts = try Command.run("/usr/bin/pgrep", ["-f", "plugin-host --library .*libFaultySSO"]).output.split(separator: "\n")
            #expect(hosts.count == 1, "one live host, the crashed ones reaped: \(hosts)")

            // A hang: the request gets 504 at its deadline, the others go on.
            let started = ContinuousClock.now
            let hung = try await Curl.run(deployment.url("hangy", "/hang"), caFile: deployment.caFile)
            #expect(hung.status == 504 && ContinuousClock.now - started < .seconds(4), "\(hung.status) after \(ContinuousClock.now - started)")
            #expect(connector.log().contains("did not decide in time"))
            #expect(try await Curl.run(deployment.url("hangy", "/headers"), caFile: deployment.caFile).status == 200)

            // Blocked threads: every thread of the host sleeps; its requests get 504, pings go unanswered and
            // the host is restarted, and the plugin's apps serve again by themselves.
            let blocked = await withTaskGroup(of: Int.self) { group in
                for _ in 0..<6 { group.addTask { (try? await Curl.run(deployment.url("blocky", "/block"), caFile: deployment.caFile))?.status ?? 0 } }
                return await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(blocked.allSatisfy { $0 == 504 || $0 == 502 }, "\(blocked)")
            #expect(try await ConfigSyncTests.eventually(timeout: .seconds(30)) { connector.log().contains("stopped answering") })
            #expect(try await ConfigSyncTests.eventually(timeout: .seconds(20)) {
                (try? await Curl.run(deployment.url("blocky", "/headers"), caFile: deployment.caFile))?.status == 200
            }, "the plugin's apps serve again after the restart")
            let (sent, failures) = await load.stop()
            #expect(sent > 20 && failures.isEmpty, "other apps failed while the plugin misbehaved: \(failures) of \(sent)")

            // Retry visibility: a GET may go again; a POST cannot, the handler is told so, and the log says why.
            let retried = try await Curl.run(deployment.url("retry", "/headers"), caFile: deployment.caFile)
            #expect(retried.status == 200 && retried.body.contains("X-Attempt: 2") && retried.header("X-Seen-By") == "retry-always", "\(retried.body)")
            let posted = try await Curl.run(deployment.url("retry", "/echo"), caFile: deployment.caFile, data: "x=1")
            #expect(posted.status == 200, "\(posted.status)")
            let posts = nginx.accessLog().components(separatedBy: "\n").filter { $0.contains("POST /echo") }
            #expect(posts.count == 1, "\(posts)")
            #expect(connector.log().contains("asked to send the request again, which cannot be done") && connector.log().contains("the request has a body"))

            // Typed settings: every problem at once, each at its line and column.
            let log = connector.log()
            for expected in [
                "bad.yaml:6:1: sso.label: required setting is missing", "bad.yaml:9:5: sso.limits.tries: expected a whole number, found \"many\"",
                "bad.yaml:10:5: sso.limits.extra: unknown setting; known here: ratio, tries", "bad.yaml:11:17: sso.modes[1]: must be one of fast, slow",
            ] {
                #expect(log.contains(expected), "\(expected) not in the log")
            }

            // A factory that failed for want of a file is made again once the file is there.
            #expect(try await Curl.run(deployment.url("needs", "/headers"), caFile: deployment.caFile).status == 502)
            try "yes".write(toFile: flag, atomically: true, encoding: .utf8)
            #expect(try await ConfigSyncTests.eventually(timeout: .seconds(20)) {
                (try? await Curl.run(deployment.url("needs", "/headers"), caFile: deployment.caFile))?.status == 200
            }, "made again once its file exists")
            #expect(connector.log().contains("the app's SSO handler could be made"))

            // The plugin's metric reaches the connector's /metrics with plugin, handler and app.
            let metrics = try await Curl.run("http://127.0.0.1:\(admin)/metrics", caFile: nil)
            #expect(metrics.body.contains(#"sallyport_sso_faulty_requests_total{plugin="faulty",handler="faulty",app="crashy",outcome="passed"}"#), "\(metrics.body)")

            await nginx.stop()
            await deployment.shutdown()
        }
    }
}
