import Foundation
import SallyportTesting
import Testing

extension EndToEnd {
    /// Hostile requests against a real relay and connector in front of nginx, which reports exactly what it
    /// received (`/headers` echoes the request line).
    @Suite("Adversarial requests")
    struct AdversarialTests {
        @Test("Paths are normalised before routing and forwarding: dot segments and slash runs cannot leave an app's prefix; encoded slashes, dots and backslashes are refused unless the app allows them")
        func pathNormalisation() async throws {
            try await EndToEnd.withNginx(hosts: ["app", "raw"]) { deployment, nginx in
                try deployment.writeApp(name: "app", prefix: "/hr/", internalURL: nginx.baseURL + "/")
                try deployment.writeApp(name: "raw", internalURL: nginx.baseURL + "/", extra: "allowEscapedPath: true")
                try await deployment.startRelay()
                try await deployment.startConnector()
                func get(_ host: String, _ path: String, http2: Bool = false) async throws -> Curl.Result {
                    try await Curl.run(deployment.url(host, path), caFile: deployment.caFile, http2: http2, extraArguments: ["--path-as-is"])
                }
                func requestLine(_ result: Curl.Result) -> String { result.body.split(whereSeparator: \.isNewline).first.map(String.init) ?? "" }

                // What the backend acts on is what was routed: inside the prefix, without dot segments.
                for (path, http2) in [("/hr/x/../headers", false), ("/hr/./headers", false), ("/hr//headers", false), ("/hr/x/y/../../headers", true)] {
                    let result = try await get("app", path, http2: http2)
                    #expect(result.status == 200, "\(path): \(result.status) \(result.body.prefix(200))")
                    #expect(requestLine(result) == "GET /headers HTTP/1.1", "\(path) reached the backend as \(requestLine(result))")
                }
                // Out of the prefix: not this app's (the host publishes nothing else).
                for path in ["/hr/../headers", "/hr/x/../../headers", "/hr/../../etc/passwd"] {
                    #expect(try await get("app", path).status == 404, "\(path)")
                }
                // Encodings backends decode into separators or dots: refused before the tunnel.
                for path in ["/hr/%2e%2e/headers", "/hr/..%2fheaders", "/hr/..%2Fheaders", "/hr/%2E%2E/headers", "/hr/..%5cheaders", "/hr/..%5Cheaders", "/hr/..;/headers"] {
                    let result = try await get("app", path)
                    #expect(result.status == 400, "\(path): \(result.status)")
                    #expect(result.body.contains("encoded slash, backslash or dot"), "\(path)")
                }
                let backslash = try await Curl.run(
                    deployment.url("app", "/hr/..\\headers"), caFile: deployment.caFile, extraArguments: ["--path-as-is"]
                )
                #expect(backslash.status == 400, "a raw backslash: \(backslash.status)")
                #expect(!nginx.accessLog().contains("%2e") && !nginx.accessLog().contains("%2f") && !nginx.accessLog().contains("..;"), "\(nginx.accessLog())")

                // An app that allows escapes gets them as sent.
                let allowed = try await get("raw", "/%2e/headers")
                #expect(allowed.status == 200 && requestLine(allowed) == "GET /%2e/headers HTTP/1.1", "\(allowed.status) \(requestLine(allowed))")
            }
        }

        @Test("Forwarding headers in every spelling are removed before the backend; malformed and duplicate Hosts are refused; a backend cannot plant or clear the relay's cookies")
        func spoofingLeftovers() async throws {
            try await EndToEnd.withNginx(hosts: ["app"]) { deployment, nginx in
                try deployment.writeApp(name: "app", internalURL: nginx.baseURL + "/")
                try await deployment.startRelay()
                try await deployment.startConnector()
                let spoofed = [
                    "x_forwarded_for: 6.6.6.1", "X_Real_IP: 6.6.6.2", "x_forwarded_host: evil.example", "X_Forwarded_Proto: gopher",
                    "X-FORWARDED-FOR: 6.6.6.4", "x-real_ip: 6.6.6.5",
                ]
                for http2 in [false, true] {
                    let result = try await Curl.run(deployment.url("app", "/headers"), caFile: deployment.caFile, http2: http2, headers: spoofed)
                    #expect(result.status == 200)
                    for planted in ["6.6.6.1", "6.6.6.2", "evil.example", "gopher", "6.6.6.4", "6.6.6.5"] {
                        #expect(!result.body.contains(planted), "\(planted) reached the backend (h2: \(http2)):\n\(result.body)")
                    }
                }
                // Host: a part of it must not route while the rest reaches the backend; one Host only.
                let confused = try await Curl.run(
                    deployment.url("app", "/headers"), caFile: deployment.caFile, headers: ["Host: app.localhost:@evil.example"]
                )
                #expect(confused.status == 400, "\(confused.status) \(confused.body.prefix(300))")
                // (A second Host line is refused too: curl sends only one, so the raw corpus below covers it.)
                #expect(!nginx.accessLog().contains("evil.example"))

                let planted = try await Curl.run(deployment.url("app", "/plant"), caFile: deployment.caFile)
                let cookies = planted.headers(named: "set-cookie")
                #expect(planted.status == 200 && cookies.contains { $0.hasPrefix("theme=dark") }, "\(cookies)")
                #expect(!cookies.contains { $0.lowercased().contains("sallyport") }, "a backend planted the relay's cookie: \(cookies)")
            }
        }
    }
}

extension EndToEnd.AdversarialTests {
    @Test("Raw HTTP/1.1 corpus: framing attacks, CONNECT, protocol switches, trailers, slow bodies and connection floods are refused or cut off, and nothing hostile reaches the backend")
    func rawCorpus() async throws {
        let deployment = try Deployment(hosts: ["app", "nobody"], limits: ["bodyReadTimeout: 2s", "sendTimeout: 3s", "maxConnectionsPerClient: 4"])
        let (backend, backendLog) = try await Self.publishRecordingBackend(deployment)
        defer { backend.signal(SIGKILL) }

        let host = "Host: app.localhost\r\n"
        let cases: [RawCase] = [
            // Framing: each refused before anything is forwarded.
            RawCase(name: "cl-te", parts: ["POST /s HTTP/1.1\r\n\(host)Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\(host)\r\n"]),
            RawCase(name: "te-cl", parts: ["POST /s HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"]),
            RawCase(name: "duplicate-cl", parts: ["POST /s HTTP/1.1\r\n\(host)Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"]),
            RawCase(name: "bare-lf", parts: ["GET /smuggled HTTP/1.1\n\(host)\n"]),
            RawCase(name: "obs-fold", parts: ["GET /smuggled HTTP/1.1\r\n\(host)X-A: a\r\n b\r\n\r\n"]),
            RawCase(name: "nul", parts: ["GET /smuggled HTTP/1.1\r\n\(host)X-A: a\u{0}b\r\n\r\n"]),
            RawCase(name: "cr-in-field", parts: ["GET /smuggled HTTP/1.1\r\n\(host)X-A: a\rb\r\n\r\n"]),
            RawCase(name: "chunk-overflow", parts: ["POST /chunked HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff1\r\nx\r\n0\r\n\r\n"]),
            RawCase(name: "oversize-header", parts: ["GET /smuggled HTTP/1.1\r\n\(host)X-Big: \(String(repeating: "a", count: 40000))\r\n\r\n"]),
            RawCase(name: "header-count", parts: ["GET /smuggled HTTP/1.1\r\n\(host)" + (0..<150).map { "X-H\($0): v\r\n" }.joined() + "\r\n"]),
            RawCase(name: "absolute-form", parts: ["GET http://evil.example/smuggled HTTP/1.1\r\n\(host)\r\n"]),
            RawCase(name: "absolute-form-userinfo", parts: ["GET http://app.localhost@evil.example/smuggled HTTP/1.1\r\n\(host)\r\n"]),
            RawCase(name: "duplicate-host", parts: ["GET /smuggled HTTP/1.1\r\n\(host)Host: evil.example\r\n\r\n"]),
            RawCase(name: "sni-host-mismatch", server_name: "nobody.localhost", parts: ["GET /headers HTTP/1.1\r\n\(host)\r\n"]),
            // CONNECT: answered at once; the relay is no forward proxy.
            RawCase(name: "connect", parts: ["CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n"]),
            // Protocol switches: only WebSocket, and only with a valid handshake.
            RawCase(name: "h2c", parts: [
                "GET /h2c HTTP/1.1\r\n\(host)Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
                "GET /smuggled-after-upgrade HTTP/1.1\r\n\(host)\r\n",
            ], pause: 0.5),
            RawCase(name: "unknown-upgrade", parts: ["GET /foo HTTP/1.1\r\n\(host)Connection: Upgrade\r\nUpgrade: foo/2\r\n\r\n", "raw bytes for a smuggled pipe"], pause: 0.5),
            RawCase(name: "websocket-bad-version", parts: [
                "GET /ws HTTP/1.1\r\n\(host)Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            ]),
            // Trailers never cross, so no identity or forwarding field can ride in them.
            RawCase(name: "trailers", parts: [
                "POST /trailers HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nSallyport-Identity: forged\r\nX-Forwarded-For: 6.6.6.6\r\nX-Trailer-Test: t\r\n\r\n",
            ]),
            // Bodies: the relay answers what it turns away without waiting for them, and cuts off a stalled one.
            RawCase(name: "unrouted-body", server_name: "nobody.localhost", parts: ["POST /x HTTP/1.1\r\nHost: nobody.localhost\r\nContent-Length: 100\r\n\r\n"], wait: 10),
            RawCase(name: "health-body", parts: ["POST /.sallyport/health HTTP/1.1\r\n\(host)Content-Length: 100\r\n\r\n"], wait: 10),
            RawCase(name: "stalled-body", parts: ["POST /stalled HTTP/1.1\r\n\(host)Content-Length: 100\r\n\r\n0123456789"], wait: 15),
            // Pipelining: answered in order; identity fields in any spelling never reach the backend.
            RawCase(name: "pipelined", parts: [
                "GET /p1 HTTP/1.1\r\n\(host)\r\nPOST /p2 HTTP/1.1\r\n\(host)Content-Length: 3\r\n\r\nabcGET /p3 HTTP/1.1\r\n\(host)Connection: close\r\n\r\n",
            ]),
            RawCase(name: "identity-spellings", parts: [
                "GET /identity HTTP/1.1\r\n\(host)Sallyport-Identity: forged-identity\r\nsallyport_identity: forged-identity\r\nSALLYPORT-APP: forged-identity\r\nSallyport-Client-Address: forged-identity\r\n\r\n",
            ]),
            // A client that reads nothing: its connection closes after the send timeout (3 s here).
            RawCase(name: "slow-read", parts: ["GET /big/32 HTTP/1.1\r\n\(host)\r\n"], wait: 20, no_read: 8, rcvbuf: 4096),
            // A client over its connection limit (4 here) is closed before TLS.
            RawCase(name: "connection-cap", parts: ["GET /capped HTTP/1.1\r\n\(host)\r\n"], hold: 4),
            RawCase(name: "after-cap", parts: ["GET /after-cap HTTP/1.1\r\n\(host)\r\n"]),
        ]
        let results = try await Self.runRaw(cases, deployment: deployment)
        func result(_ name: String) -> RawResult { results[name] ?? RawResult(statuses: [], closed_after: nil, text: "no result", refused: false) }
        for name in ["cl-te", "te-cl", "duplicate-cl", "bare-lf", "obs-fold", "nul", "cr-in-field", "duplicate-host", "websocket-bad-version"] {
            let got = result(name)
            #expect(got.statuses.first == 400, "\(name): \(got.statuses) \(got.text.prefix(200))")
        }
        for name in ["oversize-header", "header-count"] {
            #expect(result(name).statuses.first == 431, "\(name): \(result(name).statuses)")
        }
        #expect(!result("chunk-overflow").statuses.contains(200), "\(result("chunk-overflow").text.prefix(200))")
        // RFC 9112 §3.2.2: the target's host counts, not Host: evil.example is published nowhere.
        #expect(result("absolute-form").statuses == [404], "\(result("absolute-form").statuses)")
        #expect(result("absolute-form-userinfo").statuses == [400], "\(result("absolute-form-userinfo").statuses)")
        #expect(result("sni-host-mismatch").statuses.first != nil, "the edge answers; it routes by Host, not SNI")

        let connect = result("connect")
        #expect(connect.statuses == [405] && connect.text.contains("Allow: GET"), "\(connect.text.prefix(300))")
        #expect(connect.closed_after.map { $0 < 4 } == true, "CONNECT left open: \(String(describing: connect.closed_after))")

        for name in ["h2c", "unknown-upgrade"] {
            let got = result(name)
            #expect(got.statuses == [200], "\(name): \(got.statuses) \(got.text.prefix(300))")
            #expect(got.text.lowercased().contains("connection: close"), "\(name): the connection must close after the answer")
        }
        let trailers = result("trailers")
        #expect(trailers.statuses == [200], "\(trailers.text.prefix(300))")

        for name in ["unrouted-body", "health-body"] {
            let got = result(name)
            #expect(got.statuses.count == 1, "\(name): \(got.statuses)")
            #expect(got.closed_after.map { $0 < 4 } == true, "\(name): the relay held the connection for a body it does not need: \(String(describing: got.closed_after))")
        }
        let stalled = result("stalled-body")
        #expect(stalled.closed_after.map { $0 >= 1.5 && $0 < 10 } == true, "a stalled body held the connection: \(String(describing: stalled.closed_after))")

        #expect(result("pipelined").statuses == [200, 200, 200], "\(result("pipelined").text.prefix(300))")
        // The last asked to close (RFC 9112 §9.6): its answer says so, and the connection closes.
        #expect(result("pipelined").closed_after.map { $0 < 3 } == true && result("pipelined").text.lowercased().contains("connection: close"))
        #expect(result("identity-spellings").statuses == [200])
        let slowRead = result("slow-read")
        #expect((slowRead.received_bytes ?? 0) < 32 << 20 && slowRead.closed_after != nil, "a client that read nothing for 8 s got \(slowRead.received_bytes ?? 0) bytes")
        let capped = result("connection-cap")
        #expect(capped.refused || capped.statuses.isEmpty, "a fifth connection from one client was served: \(capped.statuses)")
        #expect(result("after-cap").statuses == [200], "connections are admitted again once others close")

        // What the backend received: nothing hostile, ever.
        let received = (try? String(contentsOfFile: backendLog, encoding: .utf8)) ?? ""
        for hostile in ["smuggled", "evil.example", "forged", "6.6.6.6", "\"raw\"", "pgrade", "/capped", "forged-identity"] {
            #expect(!received.contains(hostile), "\(hostile) reached the backend:\n\(received)")
        }
        let records = received.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let trailerRecord = records.first { ($0["line"] as? String)?.hasPrefix("POST /trailers ") == true }
        #expect(trailerRecord?["body_length"] as? Int == 5 && (trailerRecord?["trailers"] as? [String])?.isEmpty == true, "\(String(describing: trailerRecord))")
        #expect(!records.contains { ($0["line"] as? String)?.hasPrefix("POST /stalled ") == true && $0["body_length"] as? Int == 100 })
        #expect(records.contains { ($0["line"] as? String)?.hasPrefix("GET /h2c ") == true }, "the h2c request is served as a plain one")
        let lines = records.compactMap { $0["line"] as? String }
        let pipelined = lines.filter { $0.hasPrefix("GET /p") || $0.hasPrefix("POST /p") }
        #expect(pipelined == ["GET /p1 HTTP/1.1", "POST /p2 HTTP/1.1", "GET /p3 HTTP/1.1"], "\(pipelined)")
        await deployment.shutdown()
    }

    @Test("HTTP/2 abuse at the edge: CONNECT, host mismatch, stalled bodies, window-zero readers, idle streams, rapid reset, CONTINUATION, PING and SETTINGS floods each end the offender's stream or connection, and a bystander connection is served throughout")
    func http2Abuse() async throws {
        let deployment = try Deployment(hosts: ["app", "nobody"], limits: ["bodyReadTimeout: 2s", "sendTimeout: 3s"])
        let (backend, backendLog) = try await Self.publishRecordingBackend(deployment)
        defer { backend.signal(SIGKILL) }

        let names = [
            "bystander", "connect", "host-mismatch", "unrouted-body", "body-stall", "window-zero", "idle-streams", "over-stream-limit", "rapid-reset",
            "continuation-flood", "ping-flood", "settings-flood",
        ]
        let resultsFile = deployment.directory.file("h2-results.json")
        let client = try ChildProcess.launch(
            EndToEnd.python,
            [EndToEnd.resource("h2_client.py"), "127.0.0.1", "\(deployment.publicPort)", deployment.caFile, resultsFile] + names,
            logFile: deployment.directory.file("h2-client.log")
        )
        try #require(await client.waitForExit(timeout: .seconds(240)) == 0, "h2_client.py: \(client.log())")
        struct Outcome: Decodable {
            var status: Int?
            var reset: Int?
            var goaway: Int?
            var closed: Bool
            var seconds: Double
            var refused: Int
            var served: Int
            var ended: Int?
            var limit: Int?
            var before: Int?
        }
        let results = try JSONDecoder().decode([String: Outcome].self, from: Data(contentsOf: URL(fileURLWithPath: resultsFile)))
        func result(_ name: String) -> Outcome { results[name] ?? Outcome(closed: false, seconds: -1, refused: 0, served: 0) }
        print("h2 abuse: \(results.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "\n"))")

        #expect(result("connect").status == 405, "\(result("connect"))")
        #expect(result("host-mismatch").status == 400, "\(result("host-mismatch"))")
        #expect(result("unrouted-body").status == 404 && result("unrouted-body").seconds < 2, "\(result("unrouted-body"))")
        let stall = result("body-stall")
        #expect((stall.reset != nil || stall.status != nil) && stall.seconds >= 1.5 && stall.seconds < 10, "\(stall)")
        let windowZero = result("window-zero")
        #expect(windowZero.reset != nil && windowZero.seconds >= 2.5 && windowZero.seconds < 15, "\(windowZero)")
        let idle = result("idle-streams")
        #expect(idle.limit == 128 && idle.ended == 128 && idle.seconds < 10 && idle.status == 200, "\(idle)")
        #expect(result("over-stream-limit").goaway != nil, "\(result("over-stream-limit"))")
        #expect(result("rapid-reset").goaway == 11, "ENHANCE_YOUR_CALM: \(result("rapid-reset"))")
        for flood in ["continuation-flood", "ping-flood", "settings-flood"] {
            let got = result(flood)
            #expect((got.goaway != nil || got.closed) && got.seconds < 8, "\(flood): \(got)")
        }
        let bystander = result("bystander")
        #expect(bystander.before == 200 && bystander.status == 200, "a well-behaved connection suffered: \(bystander)")
        // Every reset above reset a tunnel stream too; the tunnel, shared by every user, takes them all.
        let relayLog = deployment.relay?.log() ?? ""
        #expect(!relayLog.contains("ended the tunnel") && !relayLog.contains("connector disconnected"), "the users' abuse cost the tunnel")

        let received = (try? String(contentsOfFile: backendLog, encoding: .utf8)) ?? ""
        for hostile in ["smuggled", "evil.example", "/flood"] {
            #expect(!received.contains(hostile), "\(hostile) reached the backend:\n\(received)")
        }
        #expect(!received.contains("/stalled-h2 HTTP/1.1\", \"headers\"") || !received.contains("\"body_length\": 100"))
        await deployment.shutdown()
    }

    @Test("A compromised connector cannot hold requests, busy the relay or forge its log: no response head in time is a 504, refresh and error floods are bounded, its strings are escaped")
    func compromisedConnector() async throws {
        let deployment = try Deployment(hosts: ["app"])
        // Backend timeouts of 1 s each: the relay waits 1 + 1 + 15 s for a response head.
        try deployment.writeApp(name: "app", internalURL: "http://127.0.0.1:9/", extra: "timeouts:\n  connect: 1s\n  response: 1s")
        try await deployment.startRelay()
        _ = try await deployment.registration(name: "rogue")
        let directory = deployment.directory.file("rogue")
        let report = deployment.directory.file("rogue-report.json")
        let rogue = try ChildProcess.launch(
            EndToEnd.python,
            [
                EndToEnd.resource("rogue_connector.py"), "127.0.0.1", "\(deployment.tunnelPort)", directory + "/connector.pem",
                directory + "/connector.key", directory + "/relay-ca.pem", report,
            ],
            logFile: deployment.directory.file("rogue.log")
        )
        defer { rogue.signal(SIGKILL) }
        try await rogue.waitForLog(containing: "flooded", timeout: .seconds(30))

        let started = ContinuousClock.now
        let result = try await Curl.run(deployment.url("app", "/never-answered"), caFile: deployment.caFile, timeout: 45)
        let waited = ContinuousClock.now - started
        #expect(result.status == 504, "\(result.status) after \(waited): \(result.stderr)")
        #expect(waited >= .seconds(15) && waited < .seconds(30), "the relay waited \(waited) for a connector that never answers")

        struct Report: Decodable { var configs: Int; var requests: Int }
        let counts = try JSONDecoder().decode(Report.self, from: Data(contentsOf: URL(fileURLWithPath: report)))
        #expect(counts.requests == 1, "a request that may have reached a backend is never sent again: \(counts.requests)")
        // 100 refreshes: a burst of 5, then 1 per second while the request above waited.
        #expect(counts.configs <= 5 + 30, "the relay answered \(counts.configs) of 100 refreshes")
        let log = deployment.relay?.log() ?? ""
        let reports = log.components(separatedBy: "connector reported an error").count - 1
        #expect(reports >= 1 && reports <= 10 + 3, "\(reports) of 100 error reports logged")
        #expect(log.contains("the connector reports errors too often"), "suppression is said once")
        let lines = log.split(separator: "\n")
        #expect(lines.allSatisfy { $0.utf8.count < 4000 }, "a log line of \(lines.map(\.utf8.count).max() ?? 0) bytes")
        #expect(!lines.contains { $0.hasPrefix("level=critical") }, "a connector forged a log line")
        #expect(!log.contains("\u{1B}"), "a raw escape sequence reached the log")
        await deployment.shutdown()
    }

    /// One hostile HTTP/1.1 exchange for `raw_client.py`.
    struct RawCase: Encodable {
        var name: String
        var server_name = "app.localhost"
        var parts: [String]
        var pause: Double = 0
        var wait: Double = 5
        var hold = 0
        var no_read: Double?
        var rcvbuf: Int?
    }

    struct RawResult: Decodable {
        var statuses: [Int]
        var closed_after: Double?
        var text: String
        var refused: Bool
        var received_bytes: Int?
    }

    /// Starts `recording_backend.py`, publishes it as the passthrough app `app`, and starts the relay and a
    /// connector; returns the backend and the file it records each request in.
    static func publishRecordingBackend(_ deployment: Deployment) async throws -> (ChildProcess, String) {
        let port = try FreePort.next()
        let log = deployment.directory.file("backend-requests.jsonl")
        let backend = try await EndToEnd.startPythonPeer("recording_backend.py", ["\(port)", log], logFile: deployment.directory.file("recording-backend.log"))
        do {
            try deployment.writeApp(name: "app", internalURL: "http://127.0.0.1:\(port)/")
            try await deployment.startRelay()
            try await deployment.startConnector()
        } catch {
            backend.signal(SIGKILL)
            throw error
        }
        return (backend, log)
    }

    /// Runs `cases` against the deployment's public port, one connection each; results by case name.
    static func runRaw(_ cases: [RawCase], deployment: Deployment) async throws -> [String: RawResult] {
        let casesFile = try deployment.directory.write("raw-cases.json", String(decoding: try JSONEncoder().encode(cases), as: UTF8.self))
        let resultsFile = deployment.directory.file("raw-results.json")
        let client = try ChildProcess.launch(
            EndToEnd.python,
            [EndToEnd.resource("raw_client.py"), "127.0.0.1", "\(deployment.publicPort)", deployment.caFile, casesFile, resultsFile],
            logFile: deployment.directory.file("raw-client.log")
        )
        let status = await client.waitForExit(timeout: .seconds(180))
        try #require(status == 0, "raw_client.py: \(client.log())")
        return try JSONDecoder().decode([String: RawResult].self, from: Data(contentsOf: URL(fileURLWithPath: resultsFile)))
    }
}
