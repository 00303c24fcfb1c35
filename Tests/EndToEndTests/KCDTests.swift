import Foundation
import SallyportTesting
import Testing

extension EndToEnd {
    /// Kerberos Constrained Delegation through relay, tunnel and connector, against a Samba AD KDC and Apache
    /// with mod_auth_gssapi (scripts/kerberos-testbed.sh). Users sign in with JWTs the test issues.
    @Suite("Kerberos constrained delegation", .serialized)
    struct KCDTests {
        static let issuer = "https://issuer.test"

        /// A running test bed, Apache, relay and connector with the apps these tests use.
        struct Setup {
            let work: TestDirectory
            let bed: KerberosTestBed
            let deployment: Deployment
            let issuer: TestIssuer
            let realm: String
            let connectorLog: () -> String
            let goBackend: ChildProcess
            let otherBackends: [ChildProcess]
            /// The connector's admin listener (metrics).
            let connectorAdmin: Int

            func get(_ app: String, _ path: String, user: String) async throws -> Curl.Result {
                let token = try await issuer.token(user: user)
                return try await Curl.run(deployment.url(app, path), caFile: deployment.caFile, headers: ["Authorization: Bearer \(token)"])
            }

            /// Runs `sallyport check kcd` with the connector's configuration and app files, and `arguments`.
            func checkKCD(_ arguments: [String]) async throws -> (status: Int32?, output: String) {
                let log = work.file("check-\(UUID().uuidString).log")
                let process = try ChildProcess.launch(
                    deployment.binary, ["check", "kcd", "--config", deployment.connectorConfig(), "--apps", deployment.appsDirectory] + arguments,
                    environment: ["KRB5_CONFIG": try #require(bed["KRB5_CONFIG"])], logFile: log
                )
                let status = await process.waitForExit(timeout: .seconds(60))
                return (status, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
            }

            func tearDown() async {
                for backend in [self.goBackend] + self.otherBackends {
                    backend.signal(SIGTERM)
                    _ = await backend.waitForExit(timeout: .seconds(10))
                }
                await deployment.shutdown()
                await bed.stop()
                work.remove()
            }
        }

        /// `bedEnvironment`: settings for the test bed's `start` (ports are added); `kerberosExtra`: lines
        /// under the connector's `kerberos:` section.
        /// `krb5Conf` edits the connector's copy of the test bed's krb5.conf.
        static func setUp(
            bedEnvironment: [String: String] = [:], kerberosExtra: [String] = [], krb5Conf: ((String) -> String)? = nil
        ) async throws -> Setup {
            let work = try TestDirectory(prefix: "sallyport-kcd")
            chmod(work.path, 0o755)  // Apache's workers (www-data) read the backend keytab inside
            var environment = bedEnvironment
            environment["KRB_TESTBED_KDC_PORT"] = String(try FreePort.next())
            environment["KRB_TESTBED_KPASSWD_PORT"] = String(try FreePort.next())
            let bed = try await KerberosTestBed.start(directory: work.file("bed"), environment: environment)
            do {
                let apachePort = try FreePort.next()
                try await bed.startApache(port: apachePort)
                let realm = try #require(bed["REALM"])
                let issuer = try TestIssuer(issuer: Self.issuer, jwksFile: work.file("jwks.json"))
                let goPort = try FreePort.next()
                let goBackend = try await Self.startGoBackend(work: work, port: goPort, keytab: try #require(bed["APP_KEYTAB"]))
                let pythonPort = try FreePort.next()
                let lighttpdPort = try FreePort.next()
                let backendEnvironment = ["KRB5_CONFIG": try #require(bed["KRB5_CONFIG"]), "KRB5_KTNAME": "FILE:" + (try #require(bed["APP_KEYTAB"]))]
                let python = try ChildProcess.launch(
                    "/usr/bin/python3", [EndToEnd.resource("gssapi_backend.py"), String(pythonPort)], environment: backendEnvironment,
                    logFile: work.file("gssapi-backend.log")
                )
                try await python.waitForLog(containing: "listening", timeout: .seconds(20))
                let lighttpd = try await Self.startLighttpd(work: work, port: lighttpdPort, keytab: try #require(bed["APP_KEYTAB"]), environment: backendEnvironment)
                let deployment = try Deployment(
                    hosts: ["kcd", "kcdraw", "other", "nospn", "outside", "byname", "kcdmutual", "gomutual"]
                        + Self.interopBackends.flatMap { backend in Self.modes.map { backend.prefix + $0.suffix } },
                    relayExtra: """
                        identityProviders:
                          api:
                            type: jwt
                            issuers:
                              - issuer: \(Self.issuer)
                                jwksFile: \(work.file("jwks.json"))
                            audiences: [sallyport-test]
                        """
                )
                let backend = "http://127.0.0.1:\(apachePort)/"
                func kcd(_ lines: [String]) -> [String] { ["preAuthentication: jwt", "sso:", "  handler: kcd"] + lines.map { "  " + $0 } }
                try deployment.writeApp(name: "kcd", internalURL: backend, auth: kcd(["spn: HTTP/app.corp.example.test"]))
                try deployment.writeApp(
                    name: "kcdraw", internalURL: backend,
                    auth: kcd(["spn: HTTP/app.corp.example.test@\(realm)", "tokenFormat: kerberos", "sendAuthorization: on401"])
                )
                try deployment.writeApp(name: "byname", internalURL: backend, auth: kcd(["spn: HTTP/app.corp.example.test", "delegatedLoginIdentity: upnUsername"]))
                try deployment.writeApp(name: "other", internalURL: backend, auth: kcd(["spn: HTTP/other.corp.example.test"]))
                try deployment.writeApp(name: "nospn", internalURL: backend, auth: kcd(["spn: HTTP/nope.corp.example.test"]))
                try deployment.writeApp(name: "kcdmutual", internalURL: backend, auth: kcd(["spn: HTTP/app.corp.example.test", "mutualAuthentication: required"]))
                let ports = ["ap": apachePort, "go": goPort, "py": pythonPort, "lt": lighttpdPort]
                for backend in Self.interopBackends {
                    for mode in Self.modes {
                        try deployment.writeApp(
                            name: backend.prefix + mode.suffix, internalURL: "http://127.0.0.1:\(ports[backend.prefix]!)/",
                            auth: kcd(["spn: HTTP/app.corp.example.test", "tokenFormat: \(mode.format)", "sendAuthorization: \(mode.mode)"])
                        )
                    }
                }
                try deployment.writeApp(
                    name: "gomutual", internalURL: "http://127.0.0.1:\(goPort)/", auth: kcd(["spn: HTTP/app.corp.example.test", "mutualAuthentication: required"])
                )
                try deployment.writeApp(name: "outside", internalURL: backend, auth: kcd(["spn: HTTP/payroll.elsewhere.test"]))
                // At debug level: tokens must not reach the logs even there.
                try await deployment.startRelay(logLevel: "debug")
                let kerberos = [
                    "kerberos:",
                    "  keytab: \(try #require(bed["CONNECTOR_KEYTAB"]))",
                    "  principal: \(try #require(bed["CONNECTOR_PRINCIPAL"]))",
                    "  allowedSPNs: [HTTP/*.corp.example.test]",
                ] + kerberosExtra.map { "  " + $0 }
                let connectorAdmin = try FreePort.next()
                var krb5Config = try #require(bed["KRB5_CONFIG"])
                if let krb5Conf {
                    krb5Config = try work.write("connector-krb5.conf", krb5Conf(try String(contentsOfFile: krb5Config, encoding: .utf8)))
                }
                let connector = try await deployment.startConnector(
                    extra: (kerberos + ["admin:", "  listen: 127.0.0.1:\(connectorAdmin)"]).joined(separator: "\n"), environment: ["KRB5_CONFIG": krb5Config],
                    logLevel: "debug"
                )
                return Setup(
                    work: work, bed: bed, deployment: deployment, issuer: issuer, realm: realm, connectorLog: { connector.log() }, goBackend: goBackend,
                    otherBackends: [python, lighttpd], connectorAdmin: connectorAdmin
                )
            } catch {
                await bed.stop()
                throw error
            }
        }

        /// Every token format with every mode; an interop app is named by its backend's prefix and the suffix.
        static let modes = [
            (suffix: "", format: "spnego", mode: "always"), (suffix: "401", format: "spnego", mode: "on401"),
            (suffix: "raw", format: "kerberos", mode: "always"), (suffix: "raw401", format: "kerberos", mode: "on401"),
        ]

        /// The backends beside Apache, by app prefix, with the `server=` each answers.
        static let interopBackends = [
            (prefix: "ap", server: "apache", documented: "Apache"), (prefix: "go", server: "gokrb5", documented: "Go, gokrb5"),
            (prefix: "py", server: "python-gssapi", documented: "Python, python3-gssapi"), (prefix: "lt", server: "lighttpd", documented: "lighttpd"),
        ]

        /// Every backend in every token format and mode as alice; then docs/kerberos.md's compatibility table must
        /// show exactly these results for `kdc` (the first words of its KDC column), so it says what the tests ran.
        static func checkMatrix(_ s: Setup, kdc: String) async throws {
            let alice = "alice@corp.example.test"
            var passed: [String: [Bool]] = [:]
            for backend in Self.interopBackends {
                for mode in Self.modes {
                    let name = backend.prefix + mode.suffix
                    let result = try await s.get(name, "/whoami", user: alice)
                    let ok = result.status == 200 && Self.field("user", in: result.body) == "alice@\(s.realm)"
                        && Self.field("server", in: result.body) == backend.server
                        && !result.headers(named: "www-authenticate").contains { $0.lowercased().hasPrefix("negotiate") }
                        && result.header("persistent-auth") == nil
                    #expect(ok, "\(kdc) \(name): \(result.status) \(result.body) \(s.connectorLog().suffix(1500))")
                    passed[backend.prefix, default: []].append(ok)
                }
            }
            let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("docs/kerberos.md").path
            let rows = try String(contentsOfFile: docs, encoding: .utf8).split(separator: "\n").filter { $0.hasPrefix("| \(kdc)") }
            for backend in Self.interopBackends {
                let row = rows.first { $0.split(separator: "|")[1].trimmingCharacters(in: .whitespaces).hasPrefix(backend.documented) }
                let cells = row.map { $0.split(separator: "|").dropFirst(2).prefix(4).map { $0.trimmingCharacters(in: .whitespaces) } }
                #expect(cells == passed[backend.prefix]?.map { $0 ? "✓" : "✗" }, "docs/kerberos.md's compatibility row for \(kdc) × \(backend.documented): \(row ?? "missing")")
            }
        }

        /// Builds `Resources/gokrb5-backend` (Go with Debian's gokrb5 v8) and starts it with the app's keytab.
        static func startGoBackend(work: TestDirectory, port: Int, keytab: String) async throws -> ChildProcess {
            let binary = work.file("gokrb5-backend")
            let build = try ChildProcess.launch(
                "go", ["build", "-o", binary, EndToEnd.resource("gokrb5-backend/main.go")],
                environment: [
                    "GOPATH": "/usr/share/gocode", "GO111MODULE": "off", "GOFLAGS": "", "GOCACHE": "/tmp/sallyport-test-gocache",
                    "HOME": work.path,
                ],
                logFile: work.file("go-build.log")
            )
            #expect(await build.waitForExit(timeout: .seconds(300)) == 0, "go build: \(build.log())")
            let backend = try ChildProcess.launch(binary, ["-listen", "127.0.0.1:\(port)", "-keytab", keytab], logFile: work.file("gokrb5-backend.log"))
            try await backend.waitForLog(containing: "listening on", timeout: .seconds(20))
            return backend
        }

        @Test("Delegation works with a krb5.conf that lacks forwardable = true; `sallyport kcd flush` drops a user's cached tickets on every connector")
        func delegationWithoutForwardableAndFlush() async throws {
            let s = try await Self.setUp(krb5Conf: { text in
                text.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.contains("forwardable") }.joined(separator: "\n")
            })
            do {
                // MIT asks for a forwardable TGT only when krb5.conf says so; the connector asks regardless.
                #expect(!(try String(contentsOfFile: s.work.file("connector-krb5.conf"), encoding: .utf8)).contains("forwardable"))
                let alice = "alice@corp.example.test"
                let result = try await s.get("kcd", "/whoami", user: alice)
                #expect(result.status == 200, "\(result.body) \(s.connectorLog().suffix(1500))")
                #expect(Self.field("user", in: result.body) == "alice@\(s.realm)")

                // Cached: no KDC exchange for the next request, until an administrator flushes alice's tickets.
                _ = try await s.get("kcd", "/whoami", user: alice)
                let before = try await s.bed.count(user: "alice")["S4U2SELF"] ?? 0
                let flushed = try await s.deployment.sallyport(["kcd", "flush", "--user", alice, "--config", s.deployment.directory.file("relay.yaml")])
                #expect(flushed.contains("on 1 connector(s)"), "\(flushed)")
                try await Task.sleep(for: .milliseconds(300))
                #expect(s.connectorLog().contains("Kerberos tickets flushed on the relay's request"))
                #expect(try await s.get("kcd", "/whoami", user: alice).status == 200)
                #expect(try await s.bed.count(user: "alice")["S4U2SELF"] == before + 1, "the flushed user's next request asks the KDC")

                // The ticket cache and the KDC exchanges in the connector's metrics: a miss and an exchange for each
                // KDC round (first request, after the flush), a hit for the cached one.
                let metrics = try await Curl.run("http://127.0.0.1:\(s.connectorAdmin)/metrics", caFile: nil).body
                func value(_ series: String) -> Double { EndToEnd.OperationsTests.sample(metrics, series) ?? -1 }
                #expect(value("sallyport_kcd_ticket_cache_hits_total") >= 1, "\(metrics)")
                #expect(value("sallyport_kcd_ticket_cache_misses_total") >= 2)
                #expect(value("sallyport_kcd_kdc_exchange_duration_seconds_count") >= 2)
                #expect(value("sallyport_kcd_ticket_cache_entries") >= 1)
                // sallyport doctor on this connector host: the keytab is read and the KDC gives a TGT.
                let doctor = try Command.run(
                    s.deployment.binary, ["doctor", "--config", s.deployment.connectorConfig()], environment: ["KRB5_CONFIG": try #require(s.bed["KRB5_CONFIG"]), "PATH": "/usr/bin:/bin"]
                )
                #expect(doctor.output.contains("ok   app kcd kcd: keytab ") && doctor.output.contains("TGT from the KDC of \(s.realm)"), "\(doctor.output)")
            } catch {
                await s.tearDown()
                throw error
            }
            await s.tearDown()
        }

        @Test("A user disabled in the directory is refused within ticketCache.revalidateInterval, though their ticket is cached")
        func disabledUserIsCutOff() async throws {
            let s = try await Self.setUp(kerberosExtra: ["ticketCache:", "  revalidateInterval: 3s"])
            do {
                let alice = "alice@corp.example.test"
                #expect(try await s.get("kcd", "/whoami", user: alice).status == 200)
                // Active: revalidated in the background (one S4U2Self more), still served from the cache.
                for _ in 0..<5 {
                    #expect(try await s.get("kcd", "/whoami", user: alice).status == 200)
                    try await Task.sleep(for: .seconds(1))
                }
                #expect((try await s.bed.count(user: "alice")["S4U2SELF"] ?? 0) >= 2, "no revalidation")

                try await s.bed.setUser("alice", enabled: false)
                let disabled = ContinuousClock.now
                var status = 200
                while status == 200, ContinuousClock.now - disabled < .seconds(15) {
                    status = try await s.get("kcd", "/whoami", user: alice).status
                    if status == 200 { try await Task.sleep(for: .milliseconds(500)) }
                }
                let after = ContinuousClock.now - disabled
                #expect(status == 403, "still served \(after) after the account was disabled")
                #expect(after < .seconds(8), "refused only after \(after)")
                #expect(s.connectorLog().contains("the KDC no longer vouches for a user"))
            } catch {
                await s.tearDown()
                throw error
            }
            await s.tearDown()
        }

        /// lighttpd with mod_authn_gssapi (it sends no mutual-authentication reply), a CGI answering /whoami.
        static func startLighttpd(work: TestDirectory, port: Int, keytab: String, environment: [String: String]) async throws -> ChildProcess {
            let root = work.file("lighttpd")
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            let configuration = try work.write(
                "lighttpd/lighttpd.conf",
                """
                server.modules = ("mod_auth", "mod_authn_gssapi", "mod_cgi", "mod_alias", "mod_accesslog")
                server.bind = "127.0.0.1"
                server.port = \(port)
                server.document-root = "\(root)"
                server.errorlog = "\(root)/error.log"
                accesslog.filename = "\(root)/access.log"
                alias.url = ("/whoami" => "\(EndToEnd.resource("lighttpd-whoami.cgi"))")
                cgi.assign = ("" => "")
                auth.backend = "gssapi"
                auth.backend.gssapi.keytab = "\(keytab)"
                auth.backend.gssapi.principal = "HTTP/app.corp.example.test"
                auth.backend.gssapi.store-creds = "disable"
                auth.require = ("/whoami" => ("method" => "gssapi", "realm" => "", "require" => "valid-user"))

                """
            )
            let server = try ChildProcess.launch("/usr/sbin/lighttpd", ["-D", "-f", configuration], environment: environment, logFile: work.file("lighttpd.log"))
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline {
                if (try? await Curl.run("http://127.0.0.1:\(port)/whoami", caFile: nil).status) == 401 { return server }
                try await Task.sleep(for: .milliseconds(100))
            }
            throw HarnessTimeout(description: "lighttpd did not answer: \(server.log())")
        }

        struct HarnessTimeout: Error, CustomStringConvertible { var description: String }

        @Test("Apache, Go (gokrb5), Python (python3-gssapi) and lighttpd (mod_authn_gssapi) backends work in every token format and mode, as docs/kerberos.md says; mutualAuthentication: required insists on a verified reply")
        func goBackends() async throws {
            let s = try await Self.setUp()
            do {
                let alice = "alice@corp.example.test"
                try await Self.checkMatrix(s, kdc: "Samba AD DC")
                // gokrb5 sends accept-completed without a Kerberos reply: with the reply required, that is refused.
                let strict = try await s.get("gomutual", "/whoami", user: alice)
                #expect(strict.status == 502)
                #expect(s.connectorLog().contains("mutual-authentication-missing"))
                // Apache sends a reply that verifies: required is met.
                let apache = try await s.get("kcdmutual", "/whoami", user: alice)
                #expect(apache.status == 200, "\(apache.body)")
                #expect(Self.field("user", in: apache.body) == "alice@\(s.realm)")
            } catch {
                await s.tearDown()
                throw error
            }
            await s.tearDown()
        }

        /// The response head of `url` asked with curl --negotiate as alice (kinit with her password), straight
        /// to Apache: what a backend sends when nothing is in between.
        static func negotiateDirectly(_ s: Setup, url: String) async throws -> String {
            let cache = "FILE:" + s.work.file("alice-direct.ccache")
            let environment = ["KRB5_CONFIG": try #require(s.bed["KRB5_CONFIG"]), "KRB5CCNAME": cache, "PASSWORD": try #require(s.bed["ALICE_PASSWORD"])]
            let kinit = try ChildProcess.launch(
                "/bin/sh", ["-c", "printf '%s\\n' \"$PASSWORD\" | kinit alice"], environment: environment, logFile: s.work.file("kinit.log")
            )
            #expect(await kinit.waitForExit(timeout: .seconds(30)) == 0, "\(kinit.log())")
            let components = try #require(URLComponents(string: url))
            let host = try #require(components.host)
            let port = try #require(components.port)
            let curl = try ChildProcess.launch(
                "curl", ["-sS", "--negotiate", "-u", ":", "-D", "-", "-o", "/dev/null", "--resolve", "\(host):\(port):127.0.0.1", url],
                environment: environment, logFile: s.work.file("direct.log")
            )
            #expect(await curl.waitForExit(timeout: .seconds(30)) == 0, "\(curl.log())")
            return curl.log()
        }

        static func field(_ name: String, in body: String) -> String? {
            body.split(separator: "\n").first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) }
        }

        @Test("Users reach a Negotiate backend as themselves: both token formats and modes, one KDC exchange per user, no mix-ups, clear refusals, KDC outage")
        func delegation() async throws {
            // A fail-fast window a loaded machine cannot outrun between two requests (the default is 2 s).
            let setup = try await Self.setUp(kerberosExtra: ["kdcRetryDelay: 10s"])
            do {
                try await self.checkDelegation(setup)
            } catch {
                await setup.tearDown()
                throw error
            }
            await setup.tearDown()
        }

        func checkDelegation(_ s: Setup) async throws {
            let realm = s.realm
            let alice = "alice@corp.example.test"

            // SPNEGO, always: Apache sees alice, and the request carried a token.
            let first = try await s.get("kcd", "/whoami", user: alice)
            #expect(first.status == 200, "\(first.body) \(s.connectorLog())")
            #expect(Self.field("user", in: first.body) == "alice@\(realm)")
            #expect(Self.field("request_had_token", in: first.body) == "yes")
            #expect(Self.field("gss_mech", in: first.body) == "Negotiate/krb5")
            #expect(first.header("www-authenticate") == nil, "the backend's Negotiate reply is the connector's, not the user's")
            #expect(first.header("persistent-auth") == nil)
            var counts = try await s.bed.count(user: "alice")
            #expect(counts["S4U2SELF"] == 1 && counts["S4U2PROXY_OK"] == 1, "\(counts)")

            // Raw Kerberos tokens, on401: the first request goes without a token, the challenge is answered, and on
            // Apache's connection-bound location later requests on that connection need none.
            let raw = try await s.get("kcdraw", "/bound/whoami", user: alice)
            #expect(raw.status == 200, "\(raw.body)")
            #expect(Self.field("user", in: raw.body) == "alice@\(realm)")
            let apacheLog = try String(contentsOfFile: s.bed.directory + "/apache/logs/access.log", encoding: .utf8)
            #expect(apacheLog.contains("\"GET /bound/whoami HTTP/1.1\" 401"), "on401 sends the first request without a token")
            let again = try await s.get("kcdraw", "/bound/whoami", user: alice)
            #expect(Self.field("user", in: again.body) == "alice@\(realm)")
            #expect(Self.field("request_had_token", in: again.body) == "no", "a bound connection needs no new token: \(again.body)")
            counts = try await s.bed.count(user: "alice")
            // A separate credential per token format: one more S4U2Self and S4U2Proxy, no more.
            #expect(counts["S4U2SELF"] == 2 && counts["S4U2PROXY_OK"] == 2, "\(counts)")

            // The positive control: asked directly with alice's own ticket, Apache's bound location does send
            // Persistent-Auth and a Negotiate reply, which through Sallyport never reach the user.
            let direct = try await Self.negotiateDirectly(s, url: try #require(s.bed["APACHE_BOUND_WHOAMI_URL"]))
            #expect(direct.lowercased().contains("persistent-auth: true"), "\(direct)")
            #expect(direct.lowercased().contains("www-authenticate: negotiate "), "\(direct)")
            for _ in 0..<2 {
                let proxied = try await s.get("kcdraw", "/bound/whoami", user: alice)
                #expect(proxied.status == 200)
                #expect(proxied.header("persistent-auth") == nil, "Persistent-Auth reached the user: \(proxied.headers)")
                #expect(!proxied.headers(named: "www-authenticate").contains { $0.lowercased().hasPrefix("negotiate") })
            }

            // on401 with a body of unknown length (chunked HTTP/1.1, HTTP/2 without Content-Length): a body cannot be
            // sent twice, so the token goes with the first request. Before, the handler took these for body-less,
            // sent no token, and the user got Apache's 401.
            let postToken = try await s.issuer.token(user: alice)
            for (http2, tag) in [(false, "chunked-h1"), (true, "stream-h2")] {
                let post = try await Curl.run(
                    s.deployment.url("kcdraw", "/whoami?post=\(tag)"), caFile: s.deployment.caFile, http2: http2, method: "POST",
                    headers: ["Authorization: Bearer \(postToken)"], data: "a body of unknown length", chunked: true
                )
                let accessLog = try String(contentsOfFile: s.bed.directory + "/apache/logs/access.log", encoding: .utf8)
                let line = accessLog.split(separator: "\n").last { $0.contains("/whoami?post=\(tag)") }.map(String.init) ?? ""
                #expect(line.contains(" alice@\(realm) \"POST /whoami?post=\(tag) HTTP/1.1\""), "Apache saw: \(line)")
                #expect(!line.contains("\" 401 "), "the one request Apache saw carried the token: \(line)")
                #expect(post.status != 401, "\(post.status) \(post.body)")
                #expect(accessLog.components(separatedBy: "/whoami?post=\(tag)").count == 2, "a body is sent once")
            }

            // The user's name in the default realm (upnUsername) works too.
            let byName = try await s.get("byname", "/whoami", user: "alice@somewhere-else.example")
            #expect(Self.field("user", in: byName.body) == "alice@\(realm)", "\(byName.body)")

            // Single flight: 24 concurrent first requests of bob make one S4U2Self and one S4U2Proxy.
            let token = try await s.issuer.token(user: "bob@corp.example.test")
            let burst = try await Curl.batch(
                Array(repeating: Curl.BatchRequest(url: s.deployment.url("kcd", "/whoami"), headers: ["Authorization: Bearer \(token)"]), count: 24),
                caFile: s.deployment.caFile, parallel: 24
            )
            #expect(burst.allSatisfy { $0.status == 200 && Self.field("user", in: $0.body) == "bob@\(realm)" }, "\(burst.map(\.status))")
            counts = try await s.bed.count(user: "bob")
            #expect(counts["S4U2SELF"] == 1 && counts["S4U2PROXY"] == 1, "single flight: \(counts)")

            // Two users interleaved on one backend, thousands of requests, both modes: nobody is ever someone else.
            let tokens = [alice: try await s.issuer.token(user: alice), "bob@corp.example.test": try await s.issuer.token(user: "bob@corp.example.test")]
            var requests: [(expected: String, request: Curl.BatchRequest)] = []
            for index in 0..<2400 {
                let user = index % 2 == 0 ? alice : "bob@corp.example.test"
                let app = index % 3 == 0 ? "kcd" : "kcdraw"
                let path = index % 3 == 0 ? "/whoami" : "/bound/whoami"
                let expected = String(user.prefix { $0 != "@" }) + "@" + realm
                requests.append((expected, Curl.BatchRequest(url: s.deployment.url(app, path + "?i=\(index)"), headers: ["Authorization: Bearer \(tokens[user]!)"])))
            }
            let (results, curlErrors) = try await Curl.batchWithErrors(requests.map(\.request), caFile: s.deployment.caFile, parallel: 8)
            var mixUps: [String] = []
            var failures: [String] = []
            var withoutToken = 0
            for (index, (result, request)) in zip(results, requests).enumerated() {
                if result.status != 200 { failures.append("#\(index) \(result.status) \(result.body.prefix(200))"); continue }
                if Self.field("user", in: result.body) != request.expected { mixUps.append("#\(index) expected \(request.expected): \(result.body)") }
                if Self.field("request_had_token", in: result.body) == "no" { withoutToken += 1 }
            }
            #expect(mixUps.isEmpty, "requests answered as the wrong user: \(mixUps.prefix(3))")
            #expect(failures.isEmpty, "\(failures.count) failed: \(failures.prefix(3)) \(curlErrors.suffix(1000))")
            #expect(withoutToken > 1000, "bound connections were reused for their user: \(withoutToken) of 1600 on401 requests needed no token")
            counts = try await s.bed.count()
            #expect(counts["S4U2SELF"] == 5, "no KDC exchange beyond the first per user and format: \(counts)")

            // Refusals: a sensitive account, an unknown user, an SPN outside the delegation list → 403 with a
            // reason category in the log; an SPN outside the connector's allowlist → that app is not served.
            let carol = try await s.get("kcd", "/whoami", user: "carol@corp.example.test")
            #expect(carol.status == 403)
            #expect(carol.body.contains("cannot be signed in to this application"))
            let nobody = try await s.get("kcd", "/whoami", user: "nobody@corp.example.test")
            #expect(nobody.status == 403)
            let other = try await s.get("other", "/whoami", user: alice)
            #expect(other.status == 403)
            let outside = try await s.get("outside", "/whoami", user: alice)
            #expect(outside.status == 502)
            let unregistered = try await s.get("nospn", "/whoami", user: alice)
            #expect(unregistered.status == 502)
            let log = s.connectorLog()
            #expect(log.contains("delegation-refused for carol@corp.example.test to HTTP/app.corp.example.test at S4U2Proxy"), "\(log)")
            #expect(log.contains("KDC can't fulfill requested option"))
            #expect(log.contains("other users get tickets for this SPN, so this user's account is likely marked sensitive"))
            #expect(log.contains("unknown-user for nobody@corp.example.test"))
            #expect(log.contains("Client not found in Kerberos database"))
            #expect(log.contains("unknown-spn for alice@corp.example.test to HTTP/nope.corp.example.test at S4U2Proxy"), "\(log)")
            #expect(log.contains("delegation-refused for alice@corp.example.test to HTTP/other.corp.example.test"))
            #expect(log.contains("the user's S4U2Self ticket is forwardable, so the user may be delegated: the SPN is not in the connector account's delegation list"))
            #expect(log.contains("outside.yaml") && log.contains("is not in this connector's kerberos.allowedSPNs"))
            // Neither log, at debug level, holds a token: no Negotiate value, no bearer token.
            let relayLog = s.deployment.relay?.log() ?? ""
            #expect(!relayLog.isEmpty && relayLog.contains("debug"), "the relay logs at debug level")
            for (name, text) in [("connector", log), ("relay", relayLog)] {
                #expect(!text.contains("Negotiate "), "a Negotiate token reached the \(name)'s log")
                #expect(!text.contains("eyJ"), "a JWT reached the \(name)'s log")
            }

            // `sallyport check kcd` runs the same exchange step by step and says what failed and why.
            let check = s.checkKCD
            let good = try await check(["--app", "kcdraw", "--user", alice])
            #expect(good.status == 0, "\(good.output)")
            for step in ["keytab", "TGT", "S4U2Self", "S4U2Proxy", "token"] {
                #expect(good.output.contains("ok   \(step)"), "\(step): \(good.output)")
            }
            #expect(good.output.contains("raw Kerberos token"))
            #expect(good.output.contains(", forwardable") && !good.output.contains("NOT forwardable"), "\(good.output)")
            let sensitive = try await check(["--app", "kcd", "--user", "carol@corp.example.test"])
            #expect(sensitive.status == 1)
            #expect(sensitive.output.contains("FAIL S4U2Proxy") && sensitive.output.contains("KDC can't fulfill requested option"), "\(sensitive.output)")
            #expect(sensitive.output.contains("category: delegation-refused (users get 403)"))
            // The S4U2Self ticket's flag says why: the user, not the delegation list.
            #expect(sensitive.output.contains("warn S4U2Self") && sensitive.output.contains("NOT forwardable"), "\(sensitive.output)")
            #expect(sensitive.output.contains("fix: the KDC made the user's S4U2Self ticket non-forwardable: the user is marked sensitive (AD:"))
            // --url sends the token to the backend too: Apache accepts it and its reply verifies.
            let backend = try await check(["--app", "kcd", "--user", alice, "--url", "http://127.0.0.1:\(try #require(s.bed["APACHE_PORT"]))/whoami"])
            #expect(backend.status == 0 && backend.output.contains("ok   backend") && backend.output.contains("reply verifies"), "\(backend.output)")
            let unknown = try await check(["--app", "kcd", "--user", "nobody"])
            #expect(unknown.status == 1 && unknown.output.contains("FAIL S4U2Self") && unknown.output.contains("category: unknown-user"), "\(unknown.output)")

            // KDC outage: cached users keep working, a user without tickets gets 503, and service resumes by itself.
            try await s.bed.stopKDC()
            let cached = try await s.get("kcd", "/whoami", user: alice)
            #expect(cached.status == 200 && Self.field("user", in: cached.body) == "alice@\(realm)", "\(cached.body)")
            let cold = try await s.get("kcd", "/whoami", user: "dave@corp.example.test")
            #expect(cold.status == 503, "\(cold.body)")
            #expect(cold.body.contains("temporarily unavailable"))
            #expect(s.connectorLog().contains("kdc-unreachable for dave@corp.example.test"))
            // Right after a failure, new exchanges fail at once (no thread waits on a dead KDC) for kdcRetryDelay.
            let fast = try await s.get("kcd", "/whoami", user: "erin@corp.example.test")
            #expect(fast.status == 503)
            #expect(s.connectorLog().contains("no KDC answered moments ago"))
            try await s.bed.startKDC()
            var back = try await s.get("kcd", "/whoami", user: "dave@corp.example.test")
            for _ in 0..<60 where back.status == 503 {
                try await Task.sleep(for: .milliseconds(500))
                back = try await s.get("kcd", "/whoami", user: "dave@corp.example.test")
            }
            #expect(back.status == 200 && Self.field("user", in: back.body) == "dave@\(realm)", "\(back.body)")

            // A UPN whose suffix is not the realm is found by enterprise name (Apache reports that form).
            let partner = try await s.get("kcd", "/whoami", user: "erin@partner.example.test")
            #expect(partner.status == 200, "\(partner.body)")
            #expect(Self.field("user", in: partner.body) == "erin\\@partner.example.test@\(realm)", "\(partner.body)")
        }

        @Test("MIT KDC with the OpenLDAP backend: every backend, token format and mode; refusal categories and hints that name MIT's settings; check kcd")
        func mitKDC() async throws {
            let s = try await Self.setUp(bedEnvironment: ["KRB_TESTBED_KDC": "mit"])
            do {
                #expect(s.bed["KDC_KIND"] == "mit")
                let realm = s.realm
                let alice = "alice@corp.example.test"
                let first = try await s.get("kcd", "/whoami", user: alice)
                #expect(first.status == 200, "\(first.body) \(s.connectorLog().suffix(1500))")
                #expect(Self.field("user", in: first.body) == "alice@\(realm)")
                #expect(Self.field("gss_mech", in: first.body) == "Negotiate/krb5")
                let counts = try await s.bed.count(user: "alice")
                #expect(counts["S4U2SELF"] == 1 && counts["S4U2PROXY_OK"] == 1, "the MIT KDC's log counts: \(counts)")
                let raw = try await s.get("kcdraw", "/bound/whoami", user: alice)
                #expect(raw.status == 200 && Self.field("user", in: raw.body) == "alice@\(realm)", "\(raw.body)")
                try await Self.checkMatrix(s, kdc: "MIT krb5kdc")
                // upnUsername: the advice for MIT, which resolves no enterprise names.
                let byName = try await s.get("byname", "/whoami", user: "bob@partner.example.test")
                #expect(byName.status == 200 && Self.field("user", in: byName.body) == "bob@\(realm)", "\(byName.body)")

                // Refusals in the same categories as with AD, each with the hint that names MIT's setting.
                let carol = try await s.get("kcd", "/whoami", user: "carol@corp.example.test")
                #expect(carol.status == 403)
                let other = try await s.get("other", "/whoami", user: alice)
                #expect(other.status == 403)
                let nobody = try await s.get("kcd", "/whoami", user: "nobody@corp.example.test")
                #expect(nobody.status == 403)
                let expired = try await s.get("kcd", "/whoami", user: "frank@corp.example.test")
                #expect(expired.status == 403, "an expired principal (KDC_ERR_NAME_EXP) is user-disabled, not a 502: \(expired.body)")
                // An SPN the directory lacks: through SPNEGO the KDC's code is lost and only its words say which.
                let unregistered = try await s.get("nospn", "/whoami", user: alice)
                #expect(unregistered.status == 502)
                try await s.bed.setUser("dave", enabled: false)
                let disabled = try await s.get("kcd", "/whoami", user: "dave@corp.example.test")
                #expect(disabled.status == 403)
                let log = s.connectorLog()
                #expect(log.contains("delegation-refused for carol@corp.example.test to HTTP/app.corp.example.test at S4U2Proxy"), "\(log.suffix(3000))")
                #expect(log.contains("so this user's account is likely marked sensitive (AD: \"Account is sensitive and cannot be delegated\" or Protected Users; MIT: -allow_forwardable)"))
                #expect(log.contains("delegation-refused for alice@corp.example.test to HTTP/other.corp.example.test"))
                #expect(log.contains("MIT: krbAllowedToDelegateTo on the connector's principal"))
                #expect(log.contains("unknown-user for nobody@corp.example.test"))
                #expect(log.contains("unknown-spn for alice@corp.example.test to HTTP/nope.corp.example.test at S4U2Proxy"), "\(log.suffix(3000))")
                #expect(log.contains("user-disabled for frank@corp.example.test") && log.contains("Client's entry in database has expired"))
                #expect(log.contains("user-disabled for dave@corp.example.test") && log.contains("Client's credentials have been revoked"))
                let kdcLog = try String(contentsOfFile: try #require(s.bed["KDC_LOG"]), encoding: .utf8)
                for code in ["EVIDENCE_TKT_NOT_FORWARDABLE", "UNSUPPORTED_S4U2PROXY_REQUEST", "UNKNOWN_S4U2SELF_PRINCIPAL", "CLIENT EXPIRED", "CLIENT LOCKED OUT"] {
                    #expect(kdcLog.contains(code), "the troubleshooting table's KDC log code \(code)")
                }

                // check kcd against MIT: flags, and the fixes that name MIT's settings.
                let check = s.checkKCD
                let good = try await check(["--app", "kcdraw", "--user", alice])
                #expect(good.status == 0, "\(good.output)")
                #expect(good.output.contains("ok   TGT") && good.output.contains("ok   S4U2Self") && good.output.contains(", forwardable"), "\(good.output)")
                let sensitive = try await check(["--app", "kcd", "--user", "carol"])
                #expect(sensitive.status == 1 && sensitive.output.contains("warn S4U2Self") && sensitive.output.contains("FAIL S4U2Proxy"), "\(sensitive.output)")
                #expect(sensitive.output.contains("MIT: -allow_forwardable") && sensitive.output.contains("MIT: +ok_to_auth_as_delegate"))
                let unlisted = try await check(["--app", "other", "--user", "alice"])
                #expect(unlisted.status == 1 && unlisted.output.contains("FAIL S4U2Proxy") && unlisted.output.contains("krbAllowedToDelegateTo"), "\(unlisted.output)")
                let gone = try await check(["--app", "kcd", "--user", "frank"])
                #expect(gone.status == 1 && gone.output.contains("category: user-disabled"), "\(gone.output)")
            } catch {
                await s.tearDown()
                throw error
            }
            await s.tearDown()
        }

        @Test("Short tickets: the connector's TGT and users' tickets are renewed before they expire, and requests keep working")
        func renewal() async throws {
            // Tickets of 3 minutes (the client's ticket_lifetime); renewed 150 s ahead, i.e. after about 30 s.
            let setup = try await Self.setUp(bedEnvironment: ["KRB_TESTBED_CLIENT_TICKET_LIFETIME": "3m"], kerberosExtra: ["renewBefore: 150s"])
            do {
                let alice = "alice@corp.example.test"
                let first = try await setup.get("kcd", "/whoami", user: alice)
                #expect(first.status == 200, "\(first.body) \(setup.connectorLog())")
                let connectorBefore = try await setup.bed.count(user: "sallyport-conn")["AS_REQ"] ?? 0
                let aliceBefore = try await setup.bed.count(user: "alice")
                #expect(aliceBefore["S4U2SELF"] == 1)
                try await Task.sleep(for: .seconds(35))
                let later = try await setup.get("kcd", "/whoami", user: alice)
                #expect(later.status == 200 && Self.field("user", in: later.body) == "alice@\(setup.realm)", "\(later.body)")
                let connectorAfter = try await setup.bed.count(user: "sallyport-conn")["AS_REQ"] ?? 0
                let aliceAfter = try await setup.bed.count(user: "alice")
                #expect(connectorAfter > connectorBefore, "the connector's TGT was renewed (AS-REQ \(connectorBefore) → \(connectorAfter))")
                #expect(aliceAfter["S4U2SELF"] == 2 && aliceAfter["S4U2PROXY_OK"] == 2, "alice's ticket was replaced before expiry: \(aliceAfter)")
            } catch {
                await setup.tearDown()
                throw error
            }
            await setup.tearDown()
        }
    }
}
