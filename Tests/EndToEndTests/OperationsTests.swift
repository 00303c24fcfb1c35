import Foundation
import SallyportPKI
import SallyportTesting
import Testing

extension EndToEnd {
    /// What an operations team runs, watches and debugs with.
    @Suite("Operations")
    struct OperationsTests {
        @Test("--log-format json writes one JSON object per line; text and JSON carry millisecond UTC timestamps; under journald, text lines carry the syslog priority instead")
        func logFormats() async throws {
            let deployment = try Deployment(hosts: ["app"])
            try await deployment.startRelay(logFormat: "json")
            let jsonLines = (deployment.relay?.log() ?? "").split(separator: "\n")
            await deployment.stopRelay()
            let objects = jsonLines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: String] }
            #expect(!objects.isEmpty && objects.count == jsonLines.count, "every line is a JSON object:\n\(jsonLines.joined(separator: "\n"))")
            let listening = try #require(objects.first { $0["msg"] == "relay listening" })
            #expect(listening["level"] == "info" && listening["logger"] == "sallyport.relay" && listening["public"] != nil, "\(listening)")
            let timestamp = try #require(listening["ts"])
            #expect(timestamp.wholeMatch(of: #/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/#) != nil, "\(timestamp)")

            try await deployment.startRelay()
            let textLine = try #require((deployment.relay?.log() ?? "").split(separator: "\n").first { $0.contains("relay listening") })
            await deployment.stopRelay()
            #expect(textLine.prefixMatch(of: #/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info sallyport\.relay: /#) != nil, "\(textLine)")

            // journald: standard error is the stream JOURNAL_STREAM names (its device and inode).
            let journalFile = deployment.directory.file("journal.log")
            try #require(FileManager.default.createFile(atPath: journalFile, contents: nil))
            let attributes = try FileManager.default.attributesOfItem(atPath: journalFile)
            let device = try #require(attributes[.systemNumber] as? Int)
            let inode = try #require(attributes[.systemFileNumber] as? Int)
            let relay = try ChildProcess.launch(
                deployment.binary, ["relay", "--config", deployment.directory.file("relay.yaml")],
                environment: ["JOURNAL_STREAM": "\(device):\(inode)"], logFile: journalFile
            )
            try await relay.waitForLog(containing: "relay listening", timeout: .seconds(30))
            relay.signal(SIGTERM)
            _ = await relay.waitForExit(timeout: .seconds(30))
            let journalLine = try #require(relay.log().split(separator: "\n").first { $0.contains("relay listening") })
            #expect(journalLine.hasPrefix("<6>info sallyport.relay: "), "\(journalLine)")
            await deployment.shutdown()
        }
    }
}

extension EndToEnd.OperationsTests {
    /// The value of the series `name{labels}` in a Prometheus text exposition (labels in the order emitted).
    static func sample(_ exposition: String, _ series: String) -> Double? {
        for line in exposition.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    /// Access log lines (`sallyport.access`) in a text log.
    static func accessLines(_ log: String) -> [Substring] {
        log.split(separator: "\n").filter { $0.contains(" sallyport.access: ") }
    }

    @Test("Access log: one line per request on the relay and the connector with the request id, app, user, client, status, bytes, duration and SSO outcome; queries, tokens and credentials never appear; accessLog: false silences an app; pre-authentication outcomes are counted")
    func accessLog() async throws {
        let scratch = try TestDirectory(prefix: "sallyport-jwks")
        defer { scratch.remove() }
        let nginx = try await Nginx.start(directory: scratch)
        let issuer = try TestIssuer(issuer: EndToEnd.JWTPreAuthenticationTests.issuer, jwksFile: nginx.filesDirectory + "/jwks.json")
        let deployment = try Deployment(
            hosts: ["app", "quiet", "api", "verbose"],
            relayExtra: EndToEnd.JWTPreAuthenticationTests.relayConfig(jwksURL: nginx.baseURL + "/files/jwks.json", unreachableJWKS: "http://127.0.0.1:9/")
        )
        defer { Task { await nginx.stop(); await deployment.shutdown() } }
        try deployment.writeApp(name: "app", internalURL: nginx.baseURL + "/")
        try deployment.writeApp(name: "quiet", internalURL: nginx.baseURL + "/", extra: "accessLog: false")
        try deployment.writeApp(name: "verbose", internalURL: nginx.baseURL + "/", extra: "accessLog: withQuery")
        try deployment.writeApp(
            name: "api", internalURL: nginx.baseURL + "/",
            auth: ["preAuthentication:", "  method: jwt", "  provider: api"] + EndToEnd.JWTPreAuthenticationTests.headerSSO
        )
        try await deployment.startRelay(logLevel: "debug")
        let connector = try await deployment.startConnector(logLevel: "debug")
        let secrets = ["query-secret-41", "bearer-secret-42", "cookie-secret-43", "basic-secret-44"]
        let answer = try await Curl.run(
            deployment.url("app", "/headers?access_token=\(secrets[0])"), caFile: deployment.caFile,
            headers: ["Authorization: Bearer \(secrets[1])", "Cookie: session=\(secrets[2])", "Proxy-Authorization: Basic \(secrets[3])"]
        )
        #expect(answer.status == 200)
        let token = try await issuer.token(user: "alice@corp.example.test")
        #expect(try await Curl.run(deployment.url("api", "/headers?x=1"), caFile: deployment.caFile, headers: ["Authorization: Bearer \(token)"]).status == 200)
        #expect(try await Curl.run(deployment.url("api", "/headers"), caFile: deployment.caFile).status == 401)
        #expect(try await Curl.run(deployment.url("quiet", "/"), caFile: deployment.caFile).status == 200)
        #expect(try await Curl.run(deployment.url("verbose", "/headers?page=2"), caFile: deployment.caFile).status == 200)
        #expect(try await Curl.run(deployment.url("app", "/files/missing"), caFile: deployment.caFile).status == 404)
        #expect(try await Curl.run(deployment.url("nowhere", "/x?q=1"), caFile: nil, extraArguments: ["--insecure"]).status == 404)
        try await Task.sleep(for: .milliseconds(300))
        let metrics = try await Curl.run(deployment.adminURL("/metrics"), caFile: nil).body
        #expect(Self.sample(metrics, #"sallyport_preauth_total{app="api",outcome="allowed"}"#) == 1, "\(metrics)")
        #expect(Self.sample(metrics, #"sallyport_preauth_total{app="api",outcome="unauthenticated"}"#) == 1)
        #expect(Self.sample(metrics, #"sallyport_requests_total{app="quiet",status_class="2xx"}"#) == 1, "silent apps are still counted")
        let relay = try #require(deployment.relay)
        await nginx.stop()
        await deployment.stopRelay()
        connector.signal(SIGTERM)
        _ = await connector.waitForExit(timeout: .seconds(20))

        let relayLog = relay.log()
        let connectorLog = connector.log()
        let relayLines = Self.accessLines(relayLog)
        let connectorLines = Self.accessLines(connectorLog)
        let relayLine = try #require(relayLines.first { $0.contains("GET /headers 200") && $0.contains("app=app") }, "\(relayLines)")
        let requestID = try #require(relayLine.firstMatch(of: #/request\.id=([0-9a-f]{16})/#)?.1, "\(relayLine)")
        for field in ["app=app", "client=127.0.0.1", "connector=connector-1", "status=200", "duration_ms=", "attempts=1"] {
            #expect(relayLine.contains(field), "\(field) in \(relayLine)")
        }
        #expect(relayLine.contains("bytes_out=") && !relayLine.contains("bytes_out=0 "), "\(relayLine)")
        #expect(connectorLines.contains { $0.contains("GET /headers 200") && $0.contains("request.id=\(requestID)") && $0.contains("app=app") }, "\(connectorLines)")
        // Pre-authenticated with header SSO: the user and the handler on both sides, no token.
        let apiLine = try #require(relayLines.first { $0.contains("GET /headers 200") && $0.contains("app=api") }, "\(relayLines)")
        #expect(apiLine.contains("user=alice@corp.example.test") && apiLine.contains("sso=header"), "\(apiLine)")
        #expect(
            connectorLines.contains { $0.contains("app=api") && $0.contains("user=alice@corp.example.test") && $0.contains("sso_outcome=applied") },
            "\(connectorLines)"
        )
        #expect(relayLines.contains { $0.contains("GET /headers 401") && $0.contains("app=api") && $0.contains("preauth=unauthenticated") }, "\(relayLines)")
        #expect(relayLines.contains { $0.contains("GET /files/missing 404") && $0.contains("app=app") }, "\(relayLines)")
        #expect(relayLines.contains { $0.contains("GET /x 404") }, "unrouted requests are logged too, without their query: \(relayLines)")
        #expect(!(relayLines + connectorLines).contains { $0.contains("app=quiet") }, "accessLog: false writes no line")
        #expect(relayLines.contains { $0.contains("GET /headers?page=2 200") && $0.contains("app=verbose") }, "accessLog: withQuery: \(relayLines)")
        #expect(connectorLines.contains { $0.contains("GET /headers?page=2 200") }, "\(connectorLines)")
        for secret in secrets + [token, String(token.split(separator: ".")[2])] {
            #expect(!relayLog.contains(secret) && !connectorLog.contains(secret), "\(secret) appears in a log")
        }
    }

    @Test("Metrics: per-app requests, bytes and latency, tunnels and connectors per group, generation, reload errors counted once, certificate expiry; the connector's requests, tunnels and backend connect errors")
    func metrics() async throws {
        try await EndToEnd.withNginx(hosts: ["app", "down", "broken"]) { deployment, nginx in
            try deployment.writeApp(name: "app", internalURL: nginx.baseURL + "/")
            try deployment.writeApp(name: "down", internalURL: "http://127.0.0.1:\(try FreePort.next())/")
            try await deployment.startRelay()
            let connectorAdmin = try FreePort.next()
            try await deployment.startConnector(extra: "admin:\n  listen: 127.0.0.1:\(connectorAdmin)")
            for _ in 0..<3 { #expect(try await Curl.run(deployment.url("app", "/"), caFile: deployment.caFile).status == 200) }
            #expect(try await Curl.run(deployment.url("down", "/"), caFile: deployment.caFile).status == 502)
            // A broken file: counted once, however many reloads see it.
            _ = try deployment.directory.write("apps/broken.yaml", "name: broken\nexternalURL: https://broken.localhost/\ninternalURL: nonsense\n")
            try await Task.sleep(for: .seconds(2))

            let relay = try await Curl.run(deployment.adminURL("/metrics"), caFile: nil)
            #expect(relay.status == 200 && relay.header("content-type")?.hasPrefix("text/plain; version=0.0.4") == true)
            let text = relay.body
            #expect(Self.sample(text, #"sallyport_requests_total{app="app",status_class="2xx"}"#) == 3, "\(text)")
            #expect(Self.sample(text, #"sallyport_requests_total{app="down",status_class="5xx"}"#) == 1, "\(text)")
            #expect((Self.sample(text, #"sallyport_response_bytes_total{app="app"}"#) ?? 0) > 0)
            #expect(Self.sample(text, #"sallyport_request_duration_seconds_count{app="app"}"#) == 3)
            #expect(Self.sample(text, #"sallyport_requests_in_flight{app="app"}"#) == 0)
            #expect(Self.sample(text, #"sallyport_tunnels{group="default"}"#) == 2)
            #expect(Self.sample(text, #"sallyport_connectors{group="default",state="active"}"#) == 1)
            #expect((Self.sample(text, "sallyport_config_generation") ?? 0) >= 1)
            #expect(Self.sample(text, "sallyport_config_reload_errors_total") == 1, "\(text)")
            #expect(text.contains("# HELP sallyport_requests_total ") && text.contains("# TYPE sallyport_request_duration_seconds histogram"))
            let expiry = text.split(separator: "\n").filter { $0.hasPrefix("sallyport_certificate_expiry_seconds{listener=\"public\"") }
            #expect(!expiry.isEmpty && expiry.allSatisfy { (Double($0.split(separator: " ").last ?? "") ?? 0) > 86400 }, "\(expiry)")

            let connector = try await Curl.run("http://127.0.0.1:\(connectorAdmin)/metrics", caFile: nil)
            #expect(Self.sample(connector.body, #"sallyport_connector_requests_total{app="app",status_class="2xx"}"#) == 3, "\(connector.body)")
            #expect(Self.sample(connector.body, "sallyport_connector_tunnels") == 2)
            #expect((Self.sample(connector.body, #"sallyport_backend_connect_errors_total{app="down",reason="backend-refused"}"#) ?? 0) >= 1, "\(connector.body)")
            #expect((Self.sample(connector.body, #"sallyport_certificate_expiry_seconds{certificate="connector"}"#) ?? 0) > 86400)
            #expect(try await Curl.run("http://127.0.0.1:\(connectorAdmin)/readyz", caFile: nil).status == 200)
            let connectorStatus = try await Curl.run("http://127.0.0.1:\(connectorAdmin)/", caFile: nil)
            #expect(connectorStatus.header("content-security-policy") == "default-src 'none'; style-src 'unsafe-inline'")
            #expect(connectorStatus.body.contains("<h1>Sallyport connector connector-1</h1>") && connectorStatus.body.contains("<td>down</td>"), "\(connectorStatus.body)")

            // Every series exported is documented, and the sample dashboard uses only documented series.
            let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../docs")
            let operations = try String(contentsOf: docs.appendingPathComponent("operations.md"), encoding: .utf8)
            let exported = (text + connector.body).matches(of: #/# TYPE (sallyport_[a-z_]+) /#).map { String($0.1) }
            #expect(exported.count > 15)
            for name in exported { #expect(operations.contains("`\(name)`"), "\(name) is exported but not in docs/operations.md") }
            let dashboard = try String(contentsOf: docs.appendingPathComponent("grafana-dashboard.json"), encoding: .utf8)
            let used = Set(dashboard.matches(of: #/sallyport_[a-z_]+/#).map { String($0.0).replacing(#/_(bucket|sum|count)$/#, with: "") })
            #expect(!used.isEmpty)
            for name in used { #expect(operations.contains("`\(name)`"), "the dashboard uses \(name), which docs/operations.md does not list") }
        }
    }

    @Test("/readyz answers 503 while no app is loaded and 200 once one is; /livez always 200")
    func readiness() async throws {
        let deployment = try Deployment(hosts: ["app"])
        defer { Task { await deployment.shutdown() } }
        try await deployment.startRelay()
        let before = try await Curl.run(deployment.adminURL("/readyz"), caFile: nil)
        #expect(before.status == 503 && before.body.contains("no app configuration"), "\(before.body)")
        #expect(try await Curl.run(deployment.adminURL("/livez"), caFile: nil).status == 200)
        try deployment.writeApp(name: "app", internalURL: "http://127.0.0.1:9/")
        var ready = false
        for _ in 0..<50 where !ready {
            ready = try await Curl.run(deployment.adminURL("/readyz"), caFile: nil).status == 200
            if !ready { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(ready)
        await deployment.shutdown()
    }
}

extension EndToEnd.OperationsTests {
    @Test("The status page, opened in headless Chromium, shows groups, connectors, apps with their health, rejected files, certificates and recent errors, and loads nothing else")
    func statusPage() async throws {
        try await EndToEnd.withNginx(hosts: ["app", "orphan", "broken"]) { deployment, nginx in
            try deployment.writeApp(name: "app", internalURL: nginx.baseURL + "/")
            try deployment.writeApp(name: "orphan", internalURL: nginx.baseURL + "/", group: "branch-office")
            try await deployment.startRelay()
            let connector = try await deployment.startConnector()
            _ = try deployment.directory.write("apps/broken.yaml", "name: broken\nexternalURL: https://broken.localhost/\ninternalURL: nonsense\n")
            try await Task.sleep(for: .seconds(1))
            // An app whose backend no connector reaches: a warning in the recent errors, health says so.
            try deployment.writeApp(name: "app", internalURL: "http://127.0.0.1:\(try FreePort.next())/")
            try await connector.waitForLog(containing: "configuration applied", timeout: .seconds(10))
            try await Task.sleep(for: .seconds(1))
            #expect(try await Curl.run(deployment.url("app", "/"), caFile: deployment.caFile).status == 502)

            let screenshot = deployment.directory.file("status-page.png")
            let browser = try ChildProcess.launch(
                EndToEnd.python, [EndToEnd.resource("browser_page.py"), deployment.adminURL("/"), "--screenshot", screenshot],
                logFile: deployment.directory.file("browser.log")
            )
            let exit = await browser.waitForExit(timeout: .seconds(90))
            let output = browser.log()
            #expect(exit == 0, "\(output)")
            struct Page: Decodable {
                var title: String
                var text: String
                var tables: [String: [[String]]]
                var classes: [String: [[String]]]
                var resources: [String]
            }
            let json = try #require(output.split(separator: "\n").last { $0.hasPrefix("{") }, "\(output)")
            let page = try JSONDecoder().decode(Page.self, from: Data(json.utf8))
            #expect(page.title == "Sallyport relay")
            #expect(page.resources.isEmpty, "the page loads nothing: \(page.resources)")
            // When it was made, first: a page left open says how old it is.
            let today = Date().formatted(.iso8601.year().month().day())
            #expect(page.text.contains("as of: \(today)T"), "\(page.text.prefix(400))")
            #expect(FileManager.default.fileExists(atPath: screenshot))
            EndToEnd.keepArtefact(screenshot, as: "status-page.png")

            func row(_ section: String, _ first: String) -> [String]? { page.tables[section]?.dropFirst().first { $0.first == first } }
            let groups = page.tables["Groups"] ?? []
            #expect(row("Groups", "default")?[2] == "1 of 1", "\(groups)")
            #expect(row("Groups", "branch-office")?[3].contains("no active connector") == true, "\(groups)")
            let connectorRow = try #require(row("Connectors", "connector-1"), "\(page.tables)")
            #expect(connectorRow[2] == "default" && connectorRow[3] == "active" && connectorRow[6] == "now" && connectorRow[7] == "2", "\(connectorRow)")
            #expect(connectorRow[4].contains("0.") && connectorRow[9].contains("days"), "version and certificate expiry: \(connectorRow)")
            #expect(row("Apps", "app")?[5].hasPrefix("backend unreachable from connector-1") == true, "\(page.tables["Apps"] ?? [])")
            #expect(row("Apps", "orphan")?[5] == "no connector: answers 502", "\(page.tables["Apps"] ?? [])")
            #expect(page.tables["Rejected app files"]?.dropFirst().contains { $0[0].contains("broken.yaml") } == true, "\(page.tables)")
            #expect(page.tables["Certificates"]?.contains { $0[0] == "public" && $0[3].contains("days") } == true)
            #expect(page.tables["Recent warnings and errors"]?.contains { $0[2].contains("app configuration rejected") } == true, "\(page.text)")
            #expect(page.classes["Apps"]?.contains { $0.contains("bad") } == true, "problems are marked")
        }
    }
}

extension EndToEnd.OperationsTests {
    @Test("A relay whose public key is not its certificate's refuses to start, naming both files and the fix, in Sallyport's words; config validate --relay reports every problem of the relay's files at once")
    func clearErrors() async throws {
        let deployment = try Deployment(hosts: ["app"], relayExtra: "sessions:\n  keyFile: secrets/missing.key")
        defer { Task { await deployment.shutdown() } }
        // Another key where the public key should be.
        let stranger = try CertificateAuthority.generate(commonName: "stranger")
        try stranger.privateKeyPEM.write(toFile: deployment.pki.publicKey, atomically: true, encoding: .utf8)
        let relay = try await deployment.sallyport(["relay", "--config", deployment.directory.file("relay.yaml")], expectFailure: true)
        #expect(relay.contains("public.certificates[0].key: \(deployment.pki.publicKey) is not the key of \(deployment.pki.publicCertificate)"), "\(relay)")
        #expect(relay.contains("Use the key the certificate was issued for"))
        for leak in ["boringssl", "BoringSSL", "NIOSSL", "/Sources/", "error:0"] { #expect(!relay.contains(leak), "\(leak) in: \(relay)") }

        let validation = try await deployment.sallyport(["config", "validate", "--relay", deployment.directory.file("relay.yaml")], expectFailure: true)
        #expect(validation.contains("is not the key of \(deployment.pki.publicCertificate)"), "\(validation)")
        #expect(validation.contains("sessions.keyFile") && validation.contains("missing.key"), "\(validation)")
        #expect(validation.contains("2 errors"), "\(validation)")

        // Two mistakes in the relay file itself: both reported by the one failed start.
        let broken = try deployment.directory.write(
            "broken-relay.yaml",
            "public:\n  listen: nowhere\n  certificates: []\ntunnel:\n  listen: 127.0.0.1:0\n  certificate: a.pem\n  key: a.key\napps: apps\nreloadInterval: soon\n"
        )
        let start = try await deployment.sallyport(["relay", "--config", broken], expectFailure: true)
        #expect(start.contains("public.listen") && start.contains("reloadInterval") && start.contains("public.certificates"), "\(start)")
    }
}

extension EndToEnd.OperationsTests {
    @Test("sallyport doctor on a connector host: ok for files, certificate, relay, clock and a reachable backend; FAIL with the fix for a backend this host cannot reach and for a relay that is down; --relay checks the relay host")
    func doctor() async throws {
        try await EndToEnd.withNginx(hosts: ["app", "down"]) { deployment, nginx in
            try deployment.writeApp(name: "app", internalURL: nginx.baseURL + "/")
            try deployment.writeApp(name: "down", internalURL: "http://127.0.0.1:\(try FreePort.next())/")
            try await deployment.startRelay()
            try await deployment.startConnector()
            let config = deployment.connectorConfig()
            let report = try await deployment.sallyport(["doctor", "--config", config], expectFailure: true)
            for line in [
                "ok   files: ", "ok   certificate: valid until", "ok   proxy: none", "ok   relay: localhost:\(deployment.tunnelPort): TLS verified both ways; welcomed as connector-1",
                "ok   clock: this host's clock is", "ok   app app: \(nginx.baseURL)/ reachable from this host", "FAIL app down: http://127.0.0.1:",
                "1 step failed",
            ] {
                #expect(report.contains(line), "\(line) in:\n\(report)")
            }
            #expect(report.contains("fix: is the backend running, and does it listen on that port for this host?"), "\(report)")
            // The doctor's connection is gone again: the relay has the connector's two tunnels, and every request
            // still goes through them.
            let settled = try await EndToEnd.ConfigSyncTests.eventually(timeout: .seconds(5)) {
                let metrics = try await Curl.run(deployment.adminURL("/metrics"), caFile: nil).body
                return Self.sample(metrics, #"sallyport_tunnels{group="default"}"#) == 2
            }
            #expect(settled)
            for _ in 0..<4 { #expect(try await Curl.run(deployment.url("app", "/"), caFile: deployment.caFile).status == 200) }

            let relayReport = try await deployment.sallyport(["doctor", "--relay", "--config", deployment.directory.file("relay.yaml")])
            #expect(relayReport.contains("ok   relay: running: ready: 2 apps"), "\(relayReport)")
            #expect(relayReport.contains("ok   app app: served"), "\(relayReport)")
            #expect(relayReport.contains("no problems found"), "\(relayReport)")
            // What only the running relay knows: a backend its connector could not reach, an app file it refused.
            #expect(try await Curl.run(deployment.url("down", "/"), caFile: deployment.caFile).status == 502)
            _ = try deployment.directory.write("apps/broken.yaml", "name: broken\nexternalURL: https://broken.localhost/\ninternalURI: http://127.0.0.1:1/\n")
            try await deployment.relay!.waitForLog(containing: "broken.yaml", timeout: .seconds(10))
            let troubled = try await deployment.sallyport(["doctor", "--relay", "--config", deployment.directory.file("relay.yaml")], expectFailure: true)
            for line in ["ok   app app: served", "FAIL app down: backend unreachable from connector-1", "FAIL apps: refused by the running relay: ", "broken.yaml:3"] {
                #expect(troubled.contains(line), "\(line) in:\n\(troubled)")
            }
            try FileManager.default.removeItem(atPath: deployment.directory.file("apps/broken.yaml"))

            await deployment.stopRelay()
            let down = try await deployment.sallyport(["doctor", "--config", config], expectFailure: true)
            #expect(down.contains("FAIL relay: localhost:\(deployment.tunnelPort) refused the connection"), "\(down)")
            #expect(down.contains("fix: is the relay running"), "\(down)")
            let stopped = try await deployment.sallyport(["doctor", "--relay", "--config", deployment.directory.file("relay.yaml")])
            #expect(stopped.contains("WARN relay: not running") && stopped.contains("ok   listen: public.listen 127.0.0.1:\(deployment.publicPort) is free"), "\(stopped)")
        }
    }
}
