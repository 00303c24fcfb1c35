import Foundation
import SallyportPKI
import SallyportTesting
import Testing


extension EndToEnd {
    /// The public edge's limits and timeouts, the tunnel's mutual TLS, and reload on SIGHUP.
    @Suite("Edge and tunnel security")
    struct EdgeTests {

        @Test("Oversized request lines and header sets are refused at the edge and never reach the backend")
        func requestLimits() async throws {
            let deployment = try Deployment(hosts: ["app"], limits: ["maxHeaderCount: 20", "maxRequestLineBytes: 512", "maxHeaderBytes: 4096"])
            let nginx = try await Nginx.start(directory: deployment.directory)
            try deployment.writeApp(name: "app", internalURL: nginx.baseURL + "/")
            try await deployment.startRelay()
            try await deployment.startConnector()

            let longPath = "/" + String(repeating: "a", count: 600)
            for http2 in [false, true] {
                let long = try await Curl.run(deployment.url("app", longPath), caFile: deployment.caFile, http2: http2)
                #expect(long.status == 414)
            }
            let many = (0..<30).map { "X-Many-\($0): v" }
            let tooManyH2 = try await Curl.run(deployment.url("app"), caFile: deployment.caFile, http2: true, headers: many)
            #expect(tooManyH2.status == 431)
            // Heads over the limits are 431 (RFC 6585) on HTTP/1.1 too, as docs/architecture.md says; other
            // malformed requests stay 400.
            let tooManyH1 = try await Curl.run(deployment.url("app"), caFile: deployment.caFile, headers: many)
            #expect(tooManyH1.status == 431)
            let huge = try await Curl.run(deployment.url("app"), caFile: deployment.caFile, headers: ["X-Huge: " + String(repeating: "h", count: 5000)])
            #expect(huge.status == 431)
            let hugeH2 = try await Curl.run(deployment.url("app"), caFile: deployment.caFile, http2: true, headers: ["X-Huge: " + String(repeating: "h", count: 5000)])
            // HTTP/2 clients may ignore SETTINGS_MAX_HEADER_LIST_SIZE; before, such a request reached the backend.
            #expect(hugeH2.status == 431)
            #expect(nginx.requestCount() == 0, "a refused request reached the backend")

            let fine = try await Curl.run(deployment.url("app"), caFile: deployment.caFile, headers: Array(many.prefix(10)))
            #expect(fine.status == 200)
            await nginx.stop()
            await deployment.shutdown()
        }

        @Test("Slow request heads and idle connections are closed by the edge's timeouts")
        func edgeTimeouts() async throws {
            // Windows wide apart, so a loaded machine cannot blur them: header read 2 s, handshake 2 s, idle 8 s.
            let deployment = try Deployment(hosts: ["app"], limits: ["headerReadTimeout: 2s", "idleTimeout: 8s", "handshakeTimeout: 2s"])
            try await deployment.startRelay()
            func closeTime(partial: String?) async throws -> Double? {
                var arguments = [EndToEnd.resource("slow_client.py"), "127.0.0.1", "\(deployment.publicPort)", "app.localhost", deployment.caFile]
                if let partial { arguments.append(partial) }
                let client = try ChildProcess.launch(EndToEnd.python, arguments, logFile: deployment.directory.file("slow-\(UUID()).log"))
                _ = await client.waitForExit(timeout: .seconds(40))
                let output = client.log()
                guard let range = output.range(of: "closed after ") else { return nil }
                return Double(output[range.upperBound...].prefix { $0 != "\n" })
            }
            // A head that never completes: cut off after the header-read timeout, well before the idle one.
            let slow = try #require(try await closeTime(partial: "GET / HTTP/1.1\\r\\nHost: app.localhost\\r\\nX-Drip: 1\\r\\n"))
            #expect(slow >= 1.5 && slow < 7, "slow head closed after \(slow) s")
            // A connection that says nothing: closed after the idle timeout.
            let idle = try #require(try await closeTime(partial: nil))
            #expect(idle >= 7.5 && idle < 20, "idle connection closed after \(idle) s")
            // A TCP client that never starts TLS: closed after the handshake timeout (before, never).
            let silent = try #require(try await closeTime(partial: "--no-tls"))
            #expect(silent >= 1.5 && silent < 7, "silent TCP client closed after \(silent) s")
            await deployment.shutdown()
        }

        /// Before, SIGTERM quiesced only connections whose HTTP handlers were in place: one still in its TLS
        /// handshake missed the event, stayed open after its response and held the drain until its timeout.
        @Test("A connection accepted before SIGTERM but still in TLS gets its answer with Connection: close")
        func drainReachesConnectionsStillInTLS() async throws {
            let (deployment, nginx) = try await DataPathTests.publishedNginx()
            let goFile = deployment.directory.file("go")
            let client = try ChildProcess.launch(
                EndToEnd.python,
                [EndToEnd.resource("drain_client.py"), "127.0.0.1", "\(deployment.publicPort)", "app.localhost", deployment.caFile, goFile],
                logFile: deployment.directory.file("drain-client.log")
            )
            try await client.waitForLog(containing: "connected", timeout: .seconds(20))
            let relay = try #require(deployment.relay)
            relay.signal(SIGTERM)
            try await relay.waitForLog(containing: "relay draining", timeout: .seconds(20))
            _ = FileManager.default.createFile(atPath: goFile, contents: Data())
            _ = await client.waitForExit(timeout: .seconds(30))
            let output = client.log()
            #expect(output.contains("status: HTTP/1.1 200"), "\(output)")
            #expect(output.contains("connection: close"), "\(output)")
            #expect(output.contains("closed after"), "\(output)")
            // With nothing else open, the relay is done long before its 20 s drain timeout.
            #expect(await relay.waitForExit(timeout: .seconds(10)) == 0)
            await nginx.stop()
            await deployment.shutdown()
        }

        /// Before, curl answered every stream whose END_STREAM came in an empty DATA frame (any response without
        /// Content-Length) with RST_STREAM; NIOHTTP2 counted those against its rapid-reset limit and closed busy
        /// connections with GOAWAY ENHANCE_YOUR_CALM, and curl lost requests ("Error in the HTTP2 framing layer").
        @Test("20,000 HTTP/2 requests from curl and 20,000 from h2load on few connections all get their answers, with and without Content-Length")
        func manyHTTP2RequestsPerConnection() async throws {
            let deployment = try Deployment(hosts: ["app"])
            let nginx = try await Nginx.start(directory: deployment.directory)
            try "0123456789".write(toFile: nginx.filesDirectory + "/ten", atomically: true, encoding: .utf8)
            try deployment.writeApp(name: "app", internalURL: nginx.baseURL + "/")
            try await deployment.startRelay()
            try await deployment.startConnector()
            // /files/ten has a Content-Length; /headers (the echo module) is chunked.
            let requests = (0..<20_000).map { index in
                Curl.BatchRequest(url: deployment.url("app", index % 2 == 0 ? "/files/ten?i=\(index)" : "/headers?i=\(index)"))
            }
            let (results, errors) = try await Curl.batchWithErrors(requests, caFile: deployment.caFile, parallel: 8)
            let failed = results.enumerated().filter { index, result in
                result.status != 200 || (index % 2 == 0 ? result.body != "0123456789" : !result.body.hasPrefix("GET /headers?i=\(index) "))
            }
            #expect(failed.isEmpty, "\(failed.count) of \(requests.count) failed, e.g. \(failed.prefix(3).map { "#\($0.offset) \($0.element.status)" }); \(errors.suffix(500))")

            // A second client: h2load, 2 connections with 16 streams each, 20,000 chunked responses.
            let h2load = try ChildProcess.launch(
                "h2load",
                ["-n", "20000", "-c", "2", "-m", "16", "--connect-to=127.0.0.1:\(deployment.publicPort)", deployment.url("app", "/headers")],
                logFile: deployment.directory.file("h2load.log")
            )
            #expect(await h2load.waitForExit(timeout: .seconds(300)) == 0)
            let report = h2load.log()
            #expect(report.contains("20000 succeeded, 0 failed, 0 errored, 0 timeout"), "\(report)")
            #expect(report.contains("status codes: 20000 2xx"), "\(report)")
            #expect(!(deployment.relay?.log().contains("ENHANCE_YOUR_CALM") ?? true))
            await nginx.stop()
            await deployment.shutdown()
        }

        @Test("The tunnel refuses a connector whose certificate is not from the connector CA, and the connector says so in words")
        func foreignConnectorCertificateRefused() async throws {
            let deployment = try Deployment(hosts: ["app"])
            let nginx = try await Nginx.start(directory: deployment.directory)
            try deployment.writeApp(name: "app", internalURL: nginx.baseURL + "/")
            try await deployment.startRelay()
            let foreign = try ThrowawayPKI.write(to: deployment.directory.file("foreign-pki"), connectorName: "intruder")
            let intruder = try await deployment.startConnector(
                name: "intruder",
                certificate: (foreign.connectorCertificate, foreign.connectorKey),
                waitForConfiguration: false
            )
            try await intruder.waitForLog(containing: "tunnel connection to the relay failed", timeout: .seconds(30))
            #expect(!intruder.log().contains("configuration applied"))
            // What BoringSSL says (TLSV1_ALERT_UNKNOWN_CA), in words, without its codes or build paths.
            #expect(intruder.log().contains("does not trust this connector's certificate (unknown CA)"), "\(intruder.log())")
            for raw in ["OPENSSL_internal", ".cc:", "checkouts", "sslError"] { #expect(!intruder.log().contains(raw), "\(raw) in \(intruder.log())") }
            let result = try await Curl.run(deployment.url("app"), caFile: deployment.caFile)
            #expect(result.status == 503)
            #expect(nginx.requestCount() == 0)
            #expect(!(deployment.relay?.log().contains("connector connected") ?? true))
            await nginx.stop()
            await deployment.shutdown()
        }

        @Test("A relay certificate the connector refuses is explained: another CA than relayCA, not the name dialled, or expired; sallyport doctor says the same")
        func relayCertificateRefusedInWords() async throws {
            let deployment = try Deployment(hosts: ["app"])
            // A tunnel certificate for the name `localhost` alone: with an IP address in it, NIO accepts any name
            // once it connected to that address, and the name would never be checked.
            let authority = try CertificateAuthority.load(certificateFile: deployment.pki.tunnelCA, keyFile: deployment.pki.tunnelCAKey)
            let leaf = try authority.issueServer(commonName: "localhost", dnsNames: ["localhost"])
            try leaf.chainPEM.write(toFile: deployment.pki.tunnelCertificate, atomically: true, encoding: .utf8)
            try leaf.privateKeyPEM.write(toFile: deployment.pki.tunnelKey, atomically: true, encoding: .utf8)
            try await deployment.startRelay()
            let foreign = try ThrowawayPKI.write(to: deployment.directory.file("foreign-pki"), connectorName: "x")
            let registered = try await deployment.registration(name: "wary")
            // relayCA another CA's: the connector refuses the relay's certificate, and says whose it is.
            _ = try deployment.directory.write("wary/other-ca.yaml", registered.replacingOccurrences(of: "relayCA: relay-ca.pem", with: "relayCA: \(foreign.tunnelCA)"))
            let otherCA = try ChildProcess.launch(
                deployment.binary, ["connector", "--config", deployment.directory.file("wary/other-ca.yaml")], logFile: deployment.directory.file("other-ca.log")
            )
            defer { otherCA.signal(SIGKILL) }
            try await otherCA.waitForLog(containing: "tunnel connection to the relay failed", timeout: .seconds(30))
            #expect(otherCA.log().contains("not by relayCA (\(foreign.tunnelCA))"), "\(otherCA.log())")
            otherCA.signal(SIGKILL)
            // A name the certificate does not list.
            _ = try deployment.directory.write("wary/other-name.yaml", registered + "relayServerName: wrong.example\n")
            let otherName = try ChildProcess.launch(
                deployment.binary, ["connector", "--config", deployment.directory.file("wary/other-name.yaml")], logFile: deployment.directory.file("other-name.log")
            )
            defer { otherName.signal(SIGKILL) }
            try await otherName.waitForLog(containing: "tunnel connection to the relay failed", timeout: .seconds(30))
            #expect(otherName.log().contains("not wrong.example: dial one of those names"), "\(otherName.log())")
            let doctor = try await deployment.sallyport(["doctor", "--config", deployment.directory.file("wary/other-name.yaml")], expectFailure: true)
            #expect(doctor.contains("FAIL relay: the certificate") && doctor.contains("not wrong.example"), "\(doctor)")
            otherName.signal(SIGKILL)
            // An expired certificate, which the relay takes up on SIGHUP.
            let expired = try authority.issueServer(commonName: "localhost", dnsNames: ["localhost"], validity: .seconds(-7200))
            try expired.chainPEM.write(toFile: deployment.pki.tunnelCertificate, atomically: true, encoding: .utf8)
            try expired.privateKeyPEM.write(toFile: deployment.pki.tunnelKey, atomically: true, encoding: .utf8)
            let relay = try #require(deployment.relay)
            relay.signal(SIGHUP)
            try await relay.waitForLog(containing: "SIGHUP: reloading", timeout: .seconds(10))
            _ = try deployment.directory.write("wary/expired.yaml", registered)
            let late = try ChildProcess.launch(
                deployment.binary, ["connector", "--config", deployment.directory.file("wary/expired.yaml")], logFile: deployment.directory.file("expired.log")
            )
            defer { late.signal(SIGKILL) }
            try await late.waitForLog(containing: "tunnel connection to the relay failed", timeout: .seconds(30))
            #expect(late.log().contains("expired on") && late.log().contains("renew the relay's tunnel certificate"), "\(late.log())")
            for log in [otherCA.log(), otherName.log(), late.log()] { #expect(!log.contains("OPENSSL_internal") && !log.contains(".cc:"), "\(log)") }
            await deployment.shutdown()
        }

        @Test("SIGHUP reloads the app directory at once")
        func sighupReloads() async throws {
            let deployment = try Deployment(hosts: ["late"], reloadInterval: "1h")
            let nginx = try await Nginx.start(directory: deployment.directory)
            try await deployment.startRelay()
            try await deployment.startConnector()
            #expect(try await Curl.run(deployment.url("late"), caFile: deployment.caFile).status == 404)
            try deployment.writeApp(name: "late", internalURL: nginx.baseURL + "/")
            try await Task.sleep(for: .seconds(1))
            #expect(try await Curl.run(deployment.url("late"), caFile: deployment.caFile).status == 404, "reloaded without SIGHUP")
            deployment.relay?.signal(SIGHUP)
            var status = 0
            for _ in 0..<50 {
                status = try await Curl.run(deployment.url("late"), caFile: deployment.caFile).status
                if status == 200 { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(status == 200)
            await nginx.stop()
            await deployment.shutdown()
        }
    }
}

extension EndToEnd {
    @Suite("HTTPS backends")
    struct HTTPSBackendTests {
        @Test("An https backend is verified: trusted through backendTLS.caFile, refused (502) when its CA is unknown")
        func httpsBackendVerification() async throws {
            let deployment = try Deployment(hosts: ["trusted", "untrusted"])
            let authority = try CertificateAuthority.generate(commonName: "Internal test CA")
            let leaf = try authority.issueServer(commonName: "internal", dnsNames: ["internal.localhost"], ipAddresses: ["127.0.0.1"])
            let certificate = try deployment.directory.write("backend.pem", leaf.chainPEM)
            let key = try deployment.directory.write("backend.key", leaf.privateKeyPEM)
            let caFile = try deployment.directory.write("internal-ca.pem", authority.certificatePEM)
            let port = try FreePort.next()
            let backend = try await EndToEnd.startPythonPeer(
                "https_backend.py", ["\(port)", certificate, key], logFile: deployment.directory.file("https.log")
            )
            defer { backend.signal(SIGKILL) }

            try deployment.writeApp(
                name: "trusted",
                internalURL: "https://127.0.0.1:\(port)/",
                extra: "backendTLS:\n  caFile: \(caFile)\n  serverName: internal.localhost"
            )
            try deployment.writeApp(name: "untrusted", internalURL: "https://127.0.0.1:\(port)/")
            try await deployment.startRelay()
            try await deployment.startConnector()

            let trusted = try await Curl.run(deployment.url("trusted"), caFile: deployment.caFile)
            #expect(trusted.status == 200, "\(trusted.body)")
            #expect(trusted.body.contains("https backend ok"))
            let untrusted = try await Curl.run(deployment.url("untrusted"), caFile: deployment.caFile)
            #expect(untrusted.status == 502)
            #expect(!untrusted.body.contains("https backend ok"))
            await deployment.shutdown()
        }
    }
}

extension EndToEnd {
    @Suite("Public certificates by SNI")
    struct SNITests {
        @Test("The relay presents the certificate configured for the requested host name")
        func certificatePerHost() async throws {
            let scratch = try TestDirectory(prefix: "sallyport-sni")
            defer { scratch.remove() }
            let otherCA = try CertificateAuthority.generate(commonName: "Other public CA")
            let otherLeaf = try otherCA.issueServer(commonName: "other", dnsNames: ["other.localhost"])
            let otherCertificate = try scratch.write("other.pem", otherLeaf.chainPEM)
            let otherKey = try scratch.write("other.key", otherLeaf.privateKeyPEM)
            let otherCAFile = try scratch.write("other-ca.pem", otherCA.certificatePEM)

            let deployment = try Deployment(
                hosts: ["app"],
                extraCertificates: [(hosts: ["other.localhost"], certificate: otherCertificate, key: otherKey)]
            )
            let nginx = try await Nginx.start(directory: deployment.directory)
            try deployment.writeApp(name: "app", internalURL: nginx.baseURL + "/")
            try deployment.writeApp(name: "other", internalURL: nginx.baseURL + "/")
            try await deployment.startRelay()
            try await deployment.startConnector()

            for http2 in [false, true] {
                #expect(try await Curl.run(deployment.url("other"), caFile: otherCAFile, http2: http2).status == 200)
                #expect(try await Curl.run(deployment.url("app"), caFile: deployment.caFile, http2: http2).status == 200)
            }
            // Each host gets its own certificate: the other CA does not vouch for app.localhost, and vice versa.
            #expect(try await Curl.run(deployment.url("app"), caFile: otherCAFile).exitCode == 60)
            #expect(try await Curl.run(deployment.url("other"), caFile: deployment.caFile).exitCode == 60)
            await nginx.stop()
            await deployment.shutdown()
        }
    }
}
