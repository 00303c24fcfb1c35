import Foundation
import SallyportTesting
import Testing

#if canImport(Glibc)
import Glibc
#endif


extension EndToEnd {
    /// End-to-end: real `sallyport relay` and `sallyport connector` processes, real nginx, real curl.
    @Suite("Data path")
    struct DataPathTests {
        /// A deployment with nginx published as `app`, relay and one connector running.
        static func publishedNginx(hosts: [String] = ["app"], connectors: Int = 1) async throws -> (Deployment, Nginx) {
            let deployment = try Deployment(hosts: hosts)
            let nginx = try await Nginx.start(directory: deployment.directory)
            try deployment.writeApp(name: "app", internalURL: nginx.baseURL + "/")
            try await deployment.startRelay()
            for index in 0..<connectors { try await deployment.startConnector(name: "connector-\(index + 1)") }
            return (deployment, nginx)
        }

        /// Starts downloading `size` bytes that nginx sends at 1 MiB/s; returns the task and the output path.
        static func startSlowDownload(size: Int, deployment: Deployment, nginx: Nginx) throws -> (Task<Curl.Result, any Error>, String) {
            _ = FileManager.default.createFile(atPath: nginx.filesDirectory + "/slow.bin", contents: Data(repeating: 0x5A, count: size))
            let output = deployment.directory.file("slow.out")
            let url = deployment.url("app", "/slow/slow.bin")
            let caFile = deployment.caFile
            return (Task { try await Curl.run(url, caFile: caFile, outputFile: output, timeout: 60) }, output)
        }

        @Test("GET and POST with bodies, over HTTP/1.1 and HTTP/2")
        func getAndPost() async throws {
            let (deployment, nginx) = try await Self.publishedNginx()
            for http2 in [false, true] {
                let get = try await Curl.run(deployment.url("app"), caFile: deployment.caFile, http2: http2)
                #expect(get.exitCode == 0, "\(get.stderr)")
                #expect(get.status == 200)
                #expect(get.httpVersion == (http2 ? "2" : "1.1"))
                #expect(get.body.contains("nginx backend"))

                let body = "hello through the tunnel \(http2)"
                let post = try await Curl.run(deployment.url("app", "/echo"), caFile: deployment.caFile, http2: http2, method: "POST", data: body)
                #expect(post.status == 200)
                #expect(post.body == body)
            }
            let missing = try await Curl.run(deployment.url("app", "/status/404"), caFile: deployment.caFile)
            #expect(missing.status == 404, "a backend's own 404 passes through")
            #expect(nginx.requestCount() == 5)
            await nginx.stop()
            await deployment.shutdown()
        }

        @Test("Forwarding headers are set by Sallyport; client-sent ones and hop-by-hop headers never reach the backend")
        func forwardingHeaders() async throws {
            let (deployment, nginx) = try await Self.publishedNginx()
            let result = try await Curl.run(
                deployment.url("app", "/headers"),
                caFile: deployment.caFile,
                headers: [
                    "X-Forwarded-For: 198.51.100.66",
                    "X-Forwarded-Host: evil.example",
                    "Forwarded: for=198.51.100.67",
                    "Sallyport-App: other",
                    "SALLYPORT-CLIENT-ADDRESS: 198.51.100.68",
                    "Connection: X-Hop-Secret",
                    "X-Hop-Secret: must-not-pass",
                    "X-Real-IP: 198.51.100.69",
                    "Proxy-Connection: keep-alive-must-not-pass",
                    "TE: trailers",
                    "Trailer: X-Trailer-Must-Not-Pass",
                    "X-End-To-End: kept",
                ]
            )
            #expect(result.status == 200)
            let seen = result.body.lowercased()
            #expect(seen.contains("x-forwarded-for: 127.0.0.1"))
            #expect(seen.contains("x-forwarded-proto: https"))
            #expect(seen.contains("x-forwarded-host: app.localhost:\(deployment.publicPort)"))
            #expect(seen.contains("x-end-to-end: kept"))
            for forbidden in ["198.51.100", "evil.example", "sallyport-", "x-hop-secret", "must-not-pass", "x-real-ip", "proxy-connection", "\nte:", "trailer:"] {
                #expect(!seen.contains(forbidden), "backend saw \(forbidden):\n\(result.body)")
            }
            #expect(seen.contains("host: 127.0.0.1:\(nginx.port)"), "the backend sees its internal host")
            await nginx.stop()
            await deployment.shutdown()
        }

        @Test("Chunked request and response bodies stream through")
        func chunkedBodies() async throws {
            let (deployment, nginx) = try await Self.publishedNginx()
            let payload = String(repeating: "0123456789abcdef", count: 64 * 1024)  // 1 MiB
            let file = try deployment.directory.write("payload.txt", payload)
            for http2 in [false, true] {
                let result = try await Curl.run(
                    deployment.url("app", "/echo"), caFile: deployment.caFile, http2: http2, method: "POST", uploadFile: file, chunked: true
                )
                #expect(result.status == 200, "\(result.stderr)")
                #expect(result.body == payload)
                if !http2 {
                    // nginx's echo module answers without a length: the relay streams it chunked.
                    #expect(result.header("transfer-encoding") == "chunked")
                }
            }
            await nginx.stop()
            await deployment.shutdown()
        }

        @Test("Unknown host gets 404 and an app with no connector gets 503, both without internal names")
        func notFoundAndNoConnector() async throws {
            let deployment = try Deployment(hosts: ["orphan", "unknown"])
            let nginx = try await Nginx.start(directory: deployment.directory)
            try deployment.writeApp(name: "orphan", internalURL: nginx.baseURL + "/", group: "nobody-home")
            try await deployment.startRelay()

            let unknown = try await Curl.run(deployment.url("unknown"), caFile: deployment.caFile)
            #expect(unknown.status == 404)
            #expect(unknown.body.contains("No application is published at this address"))

            for http2 in [false, true] {
                let orphan = try await Curl.run(deployment.url("orphan"), caFile: deployment.caFile, http2: http2)
                #expect(orphan.status == 503)
                #expect(orphan.body.contains("cannot be reached right now"))
                for leaked in ["nobody-home", "127.0.0.1", "\(nginx.port)", "orphan.yaml"] {
                    #expect(!orphan.body.contains(leaked), "503 page leaks \(leaked)")
                }
            }
            #expect(nginx.requestCount() == 0)
            await nginx.stop()
            await deployment.shutdown()
        }

        @Test("Backend failures map to 502 (refused) and 504 (connect or response timeout); the reason is logged, never sent")
        func backendFailures() async throws {
            let deployment = try Deployment(hosts: ["refused", "silent", "unreachable"])
            let closedPort = try FreePort.next()
            try deployment.writeApp(name: "refused", internalURL: "http://127.0.0.1:\(closedPort)/")
            // A listener that accepts and never answers.
            let silent = try SilentListener()
            try deployment.writeApp(name: "silent", internalURL: "http://127.0.0.1:\(silent.port)/", extra: "timeouts:\n  response: 1s")
            // A listener whose accept queue is full: connections to it are never completed.
            let full = try SilentListener(backlog: 0)
            full.fill()
            try deployment.writeApp(name: "unreachable", internalURL: "http://127.0.0.1:\(full.port)/", extra: "timeouts:\n  connect: 1s")
            try await deployment.startRelay()
            try await deployment.startConnector()

            let refused = try await Curl.run(deployment.url("refused"), caFile: deployment.caFile)
            #expect(refused.status == 502)
            #expect(refused.body.contains("did not answer correctly"))
            let timedOut = try await Curl.run(deployment.url("silent"), caFile: deployment.caFile, timeout: 20)
            #expect(timedOut.status == 504)
            #expect(timedOut.body.contains("took too long"))
            let unreachable = try await Curl.run(deployment.url("unreachable"), caFile: deployment.caFile, timeout: 20)
            #expect(unreachable.status == 504)
            // The connector's reason is for the relay's log only.
            for result in [refused, timedOut, unreachable] {
                #expect(result.header("sallyport-error") == nil, "\(result.headers)")
            }
            let relayLog = deployment.relay?.log() ?? ""
            for reason in ["backend-refused", "backend-timeout", "backend-connect-timeout"] {
                #expect(relayLog.contains("reason=\(reason)"), "the relay did not log \(reason)")
            }
            silent.close()
            full.close()
            await deployment.shutdown()
        }

        @Test("The response timeout starts when the request is sent: an upload slower than it still succeeds")
        func responseTimeoutAfterUpload() async throws {
            let deployment = try Deployment(hosts: ["upload"])
            let nginx = try await Nginx.start(directory: deployment.directory)
            try deployment.writeApp(name: "upload", internalURL: nginx.baseURL + "/", extra: "timeouts:\n  response: 1s")
            try await deployment.startRelay()
            try await deployment.startConnector()
            // 192 KiB at 48 KiB/s: about four seconds of upload against a one-second response timeout.
            let body = deployment.directory.file("slow-upload.bin")
            #expect(FileManager.default.createFile(atPath: body, contents: Data(repeating: 7, count: 192 * 1024)))
            let upload = try await Curl.run(
                deployment.url("upload", "/uploads/slow.bin"), caFile: deployment.caFile, method: "PUT", uploadFile: body,
                timeout: 30, extraArguments: ["--limit-rate", "48K"]
            )
            #expect(upload.status == 201, "\(upload.stderr)")
            #expect(FileManager.default.contents(atPath: nginx.uploadsDirectory + "/slow.bin")?.count == 192 * 1024)
            await nginx.stop()
            await deployment.shutdown()
        }

        @Test("A body-less request is sent again on a new connection when a reused one closes unanswered; a POST is not")
        func retryOnStaleBackendConnection() async throws {
            let deployment = try Deployment(hosts: ["flaky"])
            let port = try FreePort.next()
            let backend = try await EndToEnd.startPythonPeer("closing_backend.py", ["\(port)"], logFile: deployment.directory.file("flaky.log"))
            defer { backend.signal(SIGKILL) }
            try deployment.writeApp(name: "flaky", internalURL: "http://127.0.0.1:\(port)/")
            try await deployment.startRelay()
            try await deployment.startConnector()
            // Each GET after the first lands on a pooled connection that the backend then drops.
            for _ in 0..<4 {
                let result = try await Curl.run(deployment.url("flaky"), caFile: deployment.caFile)
                #expect(result.status == 200)
                #expect(result.body == "fresh connection answer\n")
            }
            // A request with a body is not replayed: the user gets a clear 502 instead.
            let post = try await Curl.run(deployment.url("flaky"), caFile: deployment.caFile, method: "POST", data: "once")
            #expect(post.status == 502)
            await deployment.shutdown()
        }

        @Test("A connector reconnects by itself after the relay restarts")
        func reconnectAfterRelayRestart() async throws {
            let (deployment, nginx) = try await Self.publishedNginx()
            #expect(try await Curl.run(deployment.url("app"), caFile: deployment.caFile).status == 200)
            await deployment.stopRelay(signal: SIGKILL)
            try await Task.sleep(for: .seconds(1))
            try await deployment.startRelay()
            var status = 0
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline {
                status = try await Curl.run(deployment.url("app"), caFile: deployment.caFile).status
                if status == 200 { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(status == 200, "the connector did not come back")
            let connectorLog = deployment.connectors["connector-1"]?.log() ?? ""
            #expect(connectorLog.contains("reconnecting"))
            await nginx.stop()
            await deployment.shutdown()
        }

        @Test("SIGTERM lets in-flight requests finish, then the relay exits")
        func sigtermDrainsRelay() async throws {
            let (deployment, nginx) = try await Self.publishedNginx()
            let size = 4 * 1024 * 1024
            let (download, output) = try Self.startSlowDownload(size: size, deployment: deployment, nginx: nginx)
            try await Task.sleep(for: .seconds(1.5))
            let relay = try #require(deployment.relay)
            relay.signal(SIGTERM)
            var refused = false
            for _ in 0..<30 where !refused {
                try await Task.sleep(for: .milliseconds(100))
                refused = try await Curl.run(deployment.url("app"), caFile: deployment.caFile, timeout: 5).exitCode == 7
            }
            #expect(refused, "a draining relay accepts no new connections")

            let result = try await download.value
            #expect(result.status == 200)
            #expect(result.exitCode == 0, "\(result.stderr)")
            let attributes = try FileManager.default.attributesOfItem(atPath: output)
            #expect((attributes[.size] as? Int) == size)
            let status = await relay.waitForExit(timeout: .seconds(30))
            #expect(status == 0)
            #expect(relay.log().contains("relay draining"))
            await nginx.stop()
            await deployment.shutdown()
        }

        @Test("drainTimeout cuts a drain short, and 0 stops the relay at once")
        func drainTimeoutCutOff() async throws {
            for (timeout, bound) in [("1s", Duration.seconds(8)), ("0s", Duration.seconds(5))] {
                let deployment = try Deployment(hosts: ["app"], drainTimeout: timeout)
                let nginx = try await Nginx.start(directory: deployment.directory)
                try deployment.writeApp(name: "app", internalURL: nginx.baseURL + "/")
                try await deployment.startRelay()
                try await deployment.startConnector()
                // 20 MiB at 1 MiB/s: far longer than either drain.
                let (download, _) = try Self.startSlowDownload(size: 20 * 1024 * 1024, deployment: deployment, nginx: nginx)
                try await Task.sleep(for: .seconds(1))
                let relay = try #require(deployment.relay)
                let signalled = ContinuousClock.now
                relay.signal(SIGTERM)
                #expect(await relay.waitForExit(timeout: .seconds(30)) == 0)
                let took = ContinuousClock.now - signalled
                #expect(took < bound, "drainTimeout \(timeout): the relay took \(took) to stop")
                let result = try await download.value
                #expect(result.exitCode != 0, "drainTimeout \(timeout): the download finished although the drain was cut short")
                if timeout != "0s" { #expect(relay.log().contains("drain timeout passed; closing remaining connections")) }
                await nginx.stop()
                await deployment.shutdown()
            }
        }

        @Test("A refused WebSocket upgrade is answered as it came, and the connection then closes")
        func refusedUpgradeClosesTheConnection() async throws {
            let (deployment, nginx) = try await Self.publishedNginx()
            // nginx answers the upgrade request with its page and does not switch protocols.
            let refused = try await Curl.run(
                deployment.url("app", "/"), caFile: deployment.caFile,
                headers: ["Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]
            )
            #expect(refused.status == 200)
            #expect(refused.body.contains("nginx backend"))
            #expect(refused.header("connection")?.lowercased() == "close", "\(refused.headers)")
            #expect(refused.header("upgrade") == nil)
            await nginx.stop()
            await deployment.shutdown()
        }

        @Test("A connector's SIGTERM moves traffic to the other connector of the group without failing requests")
        func connectorDrainAndFailover() async throws {
            let (deployment, nginx) = try await Self.publishedNginx(connectors: 1)
            let size = 6 * 1024 * 1024
            // connector-1 is the only one when the download starts, so it carries it.
            let (download, output) = try Self.startSlowDownload(size: size, deployment: deployment, nginx: nginx)
            try await Task.sleep(for: .seconds(0.5))
            try await deployment.startConnector(name: "connector-2")
            let draining = try #require(deployment.connectors["connector-1"])
            draining.signal(SIGTERM)
            try await Task.sleep(for: .seconds(1))
            // An idle connector exits at once on SIGTERM: this one is still there because it carries the download
            // (6 s at 1 MiB/s), which shows the test tests what it says.
            #expect(draining.isRunning, "connector-1 exited although the download was in flight on it")
            for _ in 0..<10 {
                let result = try await Curl.run(deployment.url("app"), caFile: deployment.caFile)
                #expect(result.status == 200)
            }
            let result = try await download.value
            #expect(result.status == 200)
            #expect(result.exitCode == 0, "\(result.stderr)")
            let attributes = try FileManager.default.attributesOfItem(atPath: output)
            #expect((attributes[.size] as? Int) == size)
            // It leaves by itself once its last request is done, cleanly.
            #expect(await draining.waitForExit(timeout: .seconds(30)) == 0, "\(draining.log())")
            #expect(draining.log().contains("connector stopped"))
            #expect(deployment.relay?.log().contains("connector is draining") == true)
            await nginx.stop()
            await deployment.shutdown()
        }

        @Test("A bad edit of an app file keeps the last good version serving; config validate names file, line and key")
        func badConfigEditKeepsServing() async throws {
            let (deployment, nginx) = try await Self.publishedNginx(hosts: ["app", "second"])
            let file = deployment.appsDirectory + "/app.yaml"
            try "name: app\nexternalURL: https://app.localhost/\ninternalURL: http://127.0.0.1:1/\nconnectorGroup: default\npreAuthentication: passthrough\ntimeouts:\n  conect: 5s\n"
                .write(toFile: file, atomically: true, encoding: .utf8)
            try deployment.writeApp(name: "second", internalURL: nginx.baseURL + "/")
            try await deployment.relay!.waitForLog(containing: "app.yaml:7:3: timeouts.conect", timeout: .seconds(10))
            // The new, good file went live; the bad one kept its last good version.
            var second = 0
            for _ in 0..<50 {
                second = try await Curl.run(deployment.url("second"), caFile: deployment.caFile).status
                if second == 200 { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(second == 200)
            let app = try await Curl.run(deployment.url("app"), caFile: deployment.caFile)
            #expect(app.status == 200)
            #expect(app.body.contains("nginx backend"))

            let validate = try ChildProcess.launch(
                deployment.binary, ["config", "validate", deployment.appsDirectory], logFile: deployment.directory.file("validate.log")
            )
            #expect(await validate.waitForExit(timeout: .seconds(20)) == 1)
            #expect(validate.log().contains("app.yaml:7:3: timeouts.conect: unknown key"))
            await nginx.stop()
            await deployment.shutdown()
        }

        @Test("WebSocket upgrade is tunnelled: echo through relay, tunnel and connector")
        func webSocketEcho() async throws {
            let deployment = try Deployment(hosts: ["ws"])
            let port = try FreePort.next()
            let echo = try await EndToEnd.startPythonPeer("ws_echo.py", ["\(port)"], logFile: deployment.directory.file("ws.log"))
            defer { echo.signal(SIGKILL) }
            try deployment.writeApp(name: "ws", internalURL: "http://127.0.0.1:\(port)/")
            try await deployment.startRelay()
            try await deployment.startConnector()
            let client = try ChildProcess.launch(
                EndToEnd.python,
                [EndToEnd.resource("ws_client.py"), "wss://ws.localhost:\(deployment.publicPort)/chat", deployment.caFile, "hello", String(repeating: "x", count: 100_000), "bye"],
                logFile: deployment.directory.file("ws-client.log")
            )
            #expect(await client.waitForExit(timeout: .seconds(30)) == 0, "\(client.log())")
            #expect(client.log().contains("ok 3"))
            await deployment.shutdown()
        }
    }
}

/// Accepts TCP connections and never answers (for timeout tests).
final class SilentListener: @unchecked Sendable {
    let port: Int
    private let fd: Int32

    /// `backlog`: with 0 and ``fill()``, further connections are never completed (their SYNs are dropped), so a
    /// client's connect times out.
    init(backlog: Int32 = 16) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        listen(fd, backlog)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        self.fd = fd
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    /// Opens connections until the accept queue is full (they are kept until ``close()``).
    func fill() {
        for _ in 0..<3 {
            let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = in_port_t(UInt16(self.port).bigEndian)
            _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            self.clients.append(client)
        }
        usleep(200_000)
    }

    private var clients: [Int32] = []

    func close() {
        for client in self.clients { _ = Glibc.close(client) }
        _ = Glibc.close(self.fd)
    }
}
