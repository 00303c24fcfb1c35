import Foundation
import SallyportTesting
import Testing

extension EndToEnd {
    /// How app configuration reaches connectors, through real relay and connector processes.
    @Suite("Configuration sync")
    struct ConfigSyncTests {
        /// Polls `probe` every 200 ms until it returns true or `timeout` passes; returns the last answer.
        static func eventually(timeout: Duration, _ probe: () async throws -> Bool) async throws -> Bool {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                if try await probe() { return true }
                try await Task.sleep(for: .milliseconds(200))
            }
            return try await probe()
        }

        /// Before, a restarted relay counted generations from 1 again and connectors that had applied a higher
        /// one ignored its pushes: an app added after the restart answered 502 for good.
        @Test("After a relay restart, connectors take its configuration although its generations start again")
        func relayRestart() async throws {
            let deployment = try Deployment(hosts: ["app", "added"])
            let nginx = try await Nginx.start(directory: deployment.directory)
            try deployment.writeApp(name: "app", internalURL: nginx.baseURL + "/")
            try await deployment.startRelay()
            let connector = try await deployment.startConnector()
            // Take the first relay process to generation 4.
            for seconds in 2...4 {
                try deployment.writeApp(name: "app", internalURL: nginx.baseURL + "/", extra: "timeouts:\n  connect: \(seconds)s")
                let applied = try await Self.eventually(timeout: .seconds(20)) {
                    connector.log().split(separator: "\n").contains { $0.contains("configuration applied") && $0.contains("/\(seconds) ") }
                }
                #expect(applied, "generation \(seconds) was not applied:\n\(connector.log())")
            }

            await deployment.stopRelay()
            try await deployment.startRelay()
            try deployment.writeApp(name: "added", internalURL: nginx.baseURL + "/")
            var last: Curl.Result?
            let served = try await Self.eventually(timeout: .seconds(30)) {
                last = try await Curl.run(deployment.url("added"), caFile: deployment.caFile, timeout: 10)
                return last?.status == 200
            }
            #expect(served, "the app added after the restart answered \(last?.status ?? 0): \(last?.body ?? "")\n\(connector.log())")
            let old = try await Curl.run(deployment.url("app"), caFile: deployment.caFile)
            #expect(old.status == 200)
            await nginx.stop()
            await deployment.shutdown()
        }
    }
}

extension EndToEnd {
    /// Backend connections and who may share them.
    @Suite("Backend connection binding")
    struct BindingTests {
        /// Before, a pooled backend connection on which a client had authenticated with NTLM or Negotiate (which
        /// authenticate the connection, not the request) went back to the shared pool and served other users.
        @Test("A backend connection that carried a client's own NTLM or Negotiate serves only that client connection")
        func clientConnectionAuthentication() async throws {
            let (deployment, nginx) = try await DataPathTests.publishedNginx()
            let url = deployment.url("app", "/connection")
            // One client connection (HTTP/1.1 keep-alive): an NTLM handshake message, then a request without one,
            // as a browser does once the connection is authenticated.
            let sameClient = try await Curl.batch(
                [Curl.BatchRequest(url: url, headers: ["Authorization: NTLM TlRMTVNTUAABAAAAB4IIAAAAAAAAAAAAAAAAAAAAAAA="]), Curl.BatchRequest(url: url)],
                caFile: deployment.caFile, parallel: 1, http2: false
            )
            #expect(sameClient.map(\.status) == [200, 200])
            let bound = sameClient[0].body
            #expect(!bound.isEmpty)
            #expect(sameClient[1].body == bound, "the client's later requests keep its authenticated backend connection")

            // Other clients, one after another (each would otherwise take the pooled connection), never get it.
            for http2 in [false, true, false] {
                let other = try await Curl.run(url, caFile: deployment.caFile, http2: http2)
                #expect(other.status == 200)
                #expect(other.body != bound, "another client got the backend connection authenticated by the first")
            }
            // A Negotiate token binds the same way, whatever its case.
            let negotiated = try await Curl.run(url, caFile: deployment.caFile, headers: ["Authorization: negotiate YIIBhwYGKwYBBQUCoIIBezCCAXeg"])
            let after = try await Curl.run(url, caFile: deployment.caFile)
            #expect(after.body != negotiated.body)
            await nginx.stop()
            await deployment.shutdown()
        }
    }
}
