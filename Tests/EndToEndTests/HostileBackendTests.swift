import Foundation
import SallyportTesting
import Testing

extension EndToEnd {
    /// A backend that breaks HTTP's framing (hostile_backend.py): bytes past a response's end, a silent or
    /// dripping body, a head the tunnel cannot carry, a body cut off. Each spoils only its own exchange, is
    /// never sent twice, and is named in both access logs.
    @Suite("Hostile backend")
    struct HostileBackendTests {
        /// Runs `body` with a relay, one connector (every request shares its backend pool) and
        /// the hostile backend published as `app` with `extra` in its app file; `body` gets the backend's log.
        static func withHostileBackend(extra: String = "", _ body: (Deployment, ChildProcess, () -> [String]) async throws -> Void) async throws {
            let deployment = try Deployment(hosts: ["app"])
            do {
                let port = try FreePort.next()
                let log = deployment.directory.file("hostile-requests.log")
                let backend = try await EndToEnd.startPythonPeer("hostile_backend.py", ["\(port)", log], logFile: deployment.directory.file("hostile.log"))
                defer { backend.signal(SIGKILL) }
                try deployment.writeApp(name: "app", internalURL: "http://127.0.0.1:\(port)/", extra: extra)
                try await deployment.startRelay()
                let connector = try await deployment.startConnector()
                try await body(deployment, connector) {
                    ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
                }
            } catch {
                await deployment.shutdown()
                throw error
            }
            await deployment.shutdown()
        }

        /// The access log line of the request for `path` in `log`.
        static func accessLine(_ log: String, path: String) -> String? {
            log.split(separator: "\n").last { $0.contains("sallyport.access") && $0.contains("path=\(path) ") }.map(String.init)
        }

        @Test("A response with bytes past its end (Content-Length too short, a 204 with a body) spoils its connection: the next request, a POST, goes on a new connection and reaches the backend once")
        func bytesPastTheEnd() async throws {
            try await Self.withHostileBackend { deployment, _, requests in
                for (index, path) in ["/extra-length", "/extra-204"].enumerated() {
                    _ = try await Curl.run(deployment.url("app", path), caFile: deployment.caFile)
                    let spoiled = try #require(requests().last { $0.hasPrefix("GET \(path) ") }?.components(separatedBy: "connection=").last)
                    let post = try await Curl.run(deployment.url("app", "/submit-\(index)"), caFile: deployment.caFile, method: "POST", data: "order=\(index)")
                    #expect(post.status == 200 && post.body == "ok POST /submit-\(index)", "\(post.status) \(post.body)")
                    let posts = requests().filter { $0.hasPrefix("POST /submit-\(index) ") }
                    #expect(posts.count == 1, "the backend received the POST \(posts.count) times: \(requests())")
                    #expect(posts.first.map { !$0.hasSuffix("connection=\(spoiled)") } == true, "the POST went on the spoiled connection: \(requests())")
                }
            }
        }

        @Test("timeouts.idle bounds a response body's silence: a silent body and one that drips a byte every 3 s are cut after the app's 2 s, and both access logs say why")
        func silentBodies() async throws {
            try await Self.withHostileBackend(extra: "timeouts:\n  idle: 2s\n") { deployment, connector, _ in
                for path in ["/silent", "/drip/3"] {
                    // Before the fix: 60 s (the pool's idle timeout) for the silent body; the drip never ended.
                    let result = try await Curl.run(deployment.url("app", path), caFile: deployment.caFile, timeout: 20)
                    #expect(result.status == 200 && result.exitCode != 0 && result.exitCode != 28, "curl \(path): exit \(result.exitCode) \(result.stderr)")
                    let line = try #require(Self.accessLine(connector.log(), path: path), "\(connector.log())")
                    #expect(line.contains("error=backend-idle-timeout"), "\(line)")
                    let relayLine = try #require(Self.accessLine(deployment.relay?.log() ?? "", path: path))
                    #expect(relayLine.contains("error=response-incomplete"), "\(relayLine)")
                }
            }
        }

        @Test("A response head the tunnel cannot carry (10,000 fields) or the decoder refuses (200 KB) is refused at the connector once: 502 with its reason, and the backend sees the GET once")
        func headTooLarge() async throws {
            try await Self.withHostileBackend { deployment, connector, requests in
                for (path, reason) in [("/many-headers", "backend-head-too-large"), ("/huge-head", "backend-bad-response")] {
                    let result = try await Curl.run(deployment.url("app", path), caFile: deployment.caFile)
                    #expect(result.status == 502, "\(path): \(result.status) \(result.body.prefix(300))")
                    #expect(requests().filter { $0.hasPrefix("GET \(path) ") }.count == 1, "\(requests())")
                    let line = try #require(Self.accessLine(connector.log(), path: path), "\(connector.log())")
                    #expect(line.contains("status=502") && line.contains("error=\(reason)"), "\(line)")
                    let relayLine = try #require(Self.accessLine(deployment.relay?.log() ?? "", path: path))
                    #expect(relayLine.contains("status=502") && relayLine.contains("attempts=1"), "\(relayLine)")
                }
                #expect(connector.log().contains("cannot be delivered; the user gets 502 and the request is not sent again"))
                // The next request is served as usual.
                #expect(try await Curl.run(deployment.url("app", "/after"), caFile: deployment.caFile).status == 200)
            }
        }

        @Test("A response cut off part-way is logged as incomplete on both sides, not as a plain 200")
        func cutOff() async throws {
            try await Self.withHostileBackend { deployment, connector, _ in
                let result = try await Curl.run(deployment.url("app", "/cut"), caFile: deployment.caFile)
                #expect(result.status == 200 && result.exitCode != 0, "the user's transfer must fail: exit \(result.exitCode)")
                let line = try #require(Self.accessLine(connector.log(), path: "/cut"), "\(connector.log())")
                #expect(line.contains("error=backend-response-incomplete"), "\(line)")
                let relayLine = try #require(Self.accessLine(deployment.relay?.log() ?? "", path: "/cut"))
                #expect(relayLine.contains("error=response-incomplete"), "\(relayLine)")
            }
        }
    }
}
