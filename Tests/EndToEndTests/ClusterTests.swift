import Foundation
import SallyportTesting
import Testing

extension EndToEnd {
    /// Several relays: two relays on one PostgreSQL database behind HAProxy, connectors that dial the balancer
    /// and keep tunnels to every relay, relays killed and restarted under load, the database restarted.
    @Suite("Several relays on PostgreSQL")
    struct ClusterTests {
        /// Runs `body` with a two-relay cluster publishing `hosts` and an nginx backend, torn down however it ends.
        /// With `serving`, the cluster serves `app` from nginx and its relays are started; otherwise `body` does that.
        static func withCluster(
            hosts: [String] = ["app"], relayExtra: String = "", serving: Bool = true, _ body: (Cluster, Nginx) async throws -> Void
        ) async throws {
            let cluster = try await Cluster.make(hosts: hosts, relayExtra: relayExtra)
            do {
                let nginx = try await Nginx.start(directory: cluster.relays[0].directory)
                do {
                    if serving {
                        try cluster.writeApp(name: "app", internalURL: nginx.baseURL + "/")
                        try await cluster.startRelays()
                    }
                    try await body(cluster, nginx)
                } catch {
                    await nginx.stop()
                    throw error
                }
                await nginx.stop()
            } catch {
                await cluster.shutdown()
                throw error
            }
            await cluster.shutdown()
        }

        /// Tunnels a relay holds now, by its log: connected minus disconnected.
        static func tunnels(_ relay: Deployment) -> Int {
            let log = relay.relay?.log() ?? ""
            return log.components(separatedBy: "connector connected").count - log.components(separatedBy: "connector disconnected").count
        }

        /// Waits until every relay holds `count` tunnels.
        static func waitForTunnels(_ cluster: Cluster, _ count: Int, timeout: Duration = .seconds(30)) async throws {
            let deadline = ContinuousClock.now + timeout
            while cluster.relays.contains(where: { Self.tunnels($0) != count }) {
                guard ContinuousClock.now < deadline else {
                    Issue.record("relays hold \(cluster.relays.map { Self.tunnels($0) }) tunnels, not \(count) each, after \(timeout)")
                    return
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }

        /// Removes connector `name` (from `listed`, `connectors list --json`) through the first relay and expects
        /// the second to cut it off within 2 s.
        static func removeThroughFirstRelay(_ name: String, listed: [[String: Any]], _ cluster: Cluster) async throws {
            let id = try #require(listed.first { $0["name"] as? String == name }?["id"] as? String)
            let other = try #require(cluster.relays[1].relay)
            let first = cluster.relays[0]
            try await first.sallyport(["connectors", "remove", id, "--config", first.directory.file("relay.yaml")])
            try await other.waitForLog(containing: "connector removed through another relay", timeout: .seconds(2))
        }

        @Test("Two relays behind HAProxy: connectors that dial the balancer keep tunnels to both; a relay killed under load costs only its requests in flight, the other keeps its tunnels, and the restarted relay gets them back")
        func killedRelay() async throws {
            try await Self.withCluster { cluster, _ in
                let a = cluster.relays[0]
                let b = cluster.relays[1]
                try await a.startConnector(name: "left")
                try await a.startConnector(name: "right")
                // Two connectors with two connections each, to each relay; none left on the balancer's address.
                try await Self.waitForTunnels(cluster, 4)
                for relay in cluster.relays {
                    #expect(try await Curl.run(relay.url("app", "/"), caFile: relay.caFile).status == 200)
                }
                #expect(try await Curl.run(cluster.url("app", "/"), caFile: a.caFile).status == 200)

                let load = FailoverTests.Load(caFile: a.caFile, every: .milliseconds(20), url: { cluster.url("app", $0) })
                try await Task.sleep(for: .seconds(1))
                let bLogBefore = b.relay?.log() ?? ""
                let killed = ContinuousClock.now
                await a.stopRelay(signal: SIGKILL)
                try await Task.sleep(for: .seconds(3))
                try await a.startRelay()
                try await Self.waitForTunnels(cluster, 4)
                try await Task.sleep(for: .seconds(1))
                let outcomes = await load.finish()

                let failed = outcomes.filter { $0.status != 200 }
                let startedAfterKill = outcomes.filter { $0.started > killed + .milliseconds(100) }
                // Requests that came after the kill found the other relay (HAProxy retries a refused connect elsewhere).
                #expect(
                    startedAfterKill.allSatisfy { $0.status == 200 },
                    "\(startedAfterKill.filter { $0.status != 200 }.map { "\($0.status) at +\($0.started - killed): \($0.body.prefix(200))" }) of \(startedAfterKill.count) requests after the kill failed"
                )
                // Only those in flight on the killed relay may fail: at most the ones started in the last half second.
                let inFlight = outcomes.filter { $0.started <= killed && $0.started > killed - .milliseconds(500) }.count
                #expect(failed.count <= inFlight, "\(failed.count) failed; \(inFlight) were in flight at the kill")
                print("killedRelay: \(outcomes.count) requests, \(failed.count) failed, \(startedAfterKill.count) started after the kill")
                #expect(outcomes.count > 100)
                // The surviving relay kept every tunnel through it all.
                let bLogAfter = b.relay?.log() ?? ""
                #expect(!bLogAfter.dropFirst(bLogBefore.count).contains("connector disconnected"))
                #expect(try await Curl.run(a.url("app", "/"), caFile: a.caFile).status == 200)
            }
        }

        @Test("A connector moved through one relay is asked to reconnect by the other within 2 s; removed through one relay, it is cut off by the other within 2 s and refused when it dials again")
        func membershipChangesPropagate() async throws {
            try await Self.withCluster { cluster, _ in
                let a = cluster.relays[0]
                let connector = try await a.startConnector(name: "doomed", connections: 2)
                try await Self.waitForTunnels(cluster, 2)
                let id = try #require(try await MembershipTests.list(a).first { $0["name"] as? String == "doomed" }?["id"] as? String)
                try await a.sallyport(["connectors", "move", id, "--group", "blue", "--config", a.directory.file("relay.yaml")])
                try await cluster.relays[1].relay?.waitForLog(containing: "connector moved through another relay", timeout: .seconds(2))
                // It comes back in its new group on both relays (its old tunnels drained).
                try await connector.waitForLog(containing: "group=blue", timeout: .seconds(10))
                try await Self.waitForTunnels(cluster, 2)
                try await Self.removeThroughFirstRelay("doomed", listed: try await MembershipTests.list(a), cluster)
                try await connector.waitForLog(containing: "no connector with certificate", timeout: .seconds(30))
                try await Self.waitForTunnels(cluster, 0, timeout: .seconds(5))
                for relay in cluster.relays {
                    #expect(try await Curl.run(relay.url("app", "/"), caFile: relay.caFile).status == 503)
                }
            }
        }

        @Test("PostgreSQL restarting leaves traffic flowing (a connector that restarts meanwhile is let back in by the relays that knew it), and the relays reconnect to it by themselves")
        func databaseRestart() async throws {
            try await Self.withCluster { cluster, _ in
                let a = cluster.relays[0]
                let b = cluster.relays[1]
                try await a.startConnector(name: "keeper", connections: 2)
                try await a.startConnector(name: "doomed", connections: 2)
                try await Self.waitForTunnels(cluster, 4)
                await cluster.postgres.stop()
                // The store is not on the request path.
                for _ in 0..<10 {
                    for relay in cluster.relays {
                        #expect(try await Curl.run(relay.url("app", "/"), caFile: relay.caFile).status == 200)
                    }
                    try await Task.sleep(for: .milliseconds(200))
                }
                // A connector that dies and comes back while the database is down: both relays identified it
                // before, and identify it from memory.
                await a.stopConnector("keeper", signal: SIGKILL)
                try await Self.waitForTunnels(cluster, 2, timeout: .seconds(10))
                try await a.startConnector(name: "keeper", connections: 2)
                try await Self.waitForTunnels(cluster, 4)
                for relay in cluster.relays {
                    #expect(relay.relay?.log().contains("identified from memory") == true)
                }
                try await cluster.postgres.start()
                // Both relays use the database again, and hear each other's changes: a removal through one relay is
                // seen by the other.
                let deadline = ContinuousClock.now + .seconds(20)
                var listed: [[String: Any]] = []
                while ContinuousClock.now < deadline {
                    if let found = try? await MembershipTests.list(b), found.count == 2 {
                        listed = found
                        break
                    }
                    try await Task.sleep(for: .milliseconds(250))
                }
                try await Self.removeThroughFirstRelay("doomed", listed: listed, cluster)
                try await Self.waitForTunnels(cluster, 2, timeout: .seconds(5))
                for relay in cluster.relays {
                    #expect(try await Curl.run(relay.url("app", "/"), caFile: relay.caFile).status == 200)
                }
            }
        }
        @Test("OIDC across relays: a user signed in through one relay is signed in on the other (the key the relays share in the database), and a sign-in response is single-use across them")
        func signInAcrossRelays() async throws {
            let providerPort = try FreePort.next()
            let providerURL = "http://127.0.0.1:\(providerPort)"
            let relayExtra = """
                identityProviders:
                  corp:
                    type: oidc
                    issuer: \(providerURL)
                    clientID: sallyport-test
                    clientSecretFile: oidc-secret
                    claims:
                      keep: [upn]
                """
            try await Self.withCluster(hosts: ["portal"], relayExtra: relayExtra, serving: false) { cluster, nginx in
                for relay in cluster.relays {
                    _ = try relay.directory.write("oidc-secret", "s3cret\n")
                    try relay.writeApp(
                        name: "portal", internalURL: nginx.baseURL + "/",
                        auth: ["preAuthentication:", "  method: oidc", "  provider: corp", "sso:", "  handler: header", "  headers:", "    X-Remote-User: \"{upn}\""]
                    )
                }
                let provider = try await EndToEnd.startPythonPeer(
                    "oidc_provider.py",
                    [
                        "\(providerPort)", "--client-id", "sallyport-test", "--client-secret", "s3cret", "--require-nonce",
                        "--redirect-uri", cluster.url("portal", "/.sallyport/auth/callback"), "--user", OIDCPreAuthenticationTests.alice,
                    ],
                    logFile: cluster.relays[0].directory.file("oidc-provider.log")
                )
                try await cluster.startRelays()
                try await cluster.relays[0].startConnector()
                let caFile = cluster.relays[0].caFile
                // Before the first request through the balancer: both relays hold the connector's tunnels, say they
                // are ready, and the balancer has seen one of them ready (it checks every 500 ms; until then it has
                // no server for users and closes their connections).
                try await Self.waitForTunnels(cluster, 2)
                let deadline = ContinuousClock.now + .seconds(15)
                while ContinuousClock.now < deadline {
                    var ready = true
                    for relay in cluster.relays where try await Curl.run(relay.adminURL("/readyz"), caFile: nil).status != 200 { ready = false }
                    if ready, try await Curl.run(cluster.url("portal", "/.sallyport/health"), caFile: caFile).status == 200 { break }
                    try await Task.sleep(for: .milliseconds(100))
                }

                // The sign-in through the balancer: its steps land on either relay.
                let start = try await Curl.run(cluster.url("portal", "/headers"), caFile: caFile)
                #expect(start.status == 302)
                let login = try #require(OIDCPreAuthenticationTests.cookies(start).first { $0.key.hasPrefix("__Host-sallyport-login-") })
                let consent = try await Curl.run(try #require(start.header("location")), caFile: nil, method: "POST", data: "sub=alice")
                let callback = try #require(consent.header("location"))
                let answer = try await Curl.run(callback, caFile: caFile, headers: ["Cookie: \(login.key)=\(login.value)"])
                #expect(answer.status == 303, "\(answer.body)")
                let session = try #require(OIDCPreAuthenticationTests.cookies(answer)["__Host-sallyport-corp"])

                // Round-robin takes consecutive requests to both relays: each knows the session.
                for _ in 0..<6 {
                    let page = try await Curl.run(cluster.url("portal", "/headers"), caFile: caFile, headers: ["Cookie: __Host-sallyport-corp=\(session)"])
                    #expect(page.status == 200)
                    #expect(page.body.lowercased().contains("x-remote-user: alice@corp.example.test"))
                }
                for relay in cluster.relays {
                    #expect(relay.relay?.log().contains("user=alice@corp.example.test") == true, "every relay served alice")
                }
                // The callback again, on both relays: refused as a replay by whichever gets it, before the provider is
                // asked (without the shared record the other relay would take it as new and ask the provider).
                for _ in 0..<4 {
                    let replay = try await Curl.run(callback, caFile: caFile, headers: ["Cookie: \(login.key)=\(login.value)"])
                    #expect(replay.status == 400)
                }
                for relay in cluster.relays {
                    let log = relay.relay?.log() ?? ""
                    #expect(log.contains("a sign-in response was replayed"))
                    #expect(!log.contains("refused the authorization code"))
                }
                provider.signal(SIGKILL)
            }
        }

        /// `sallyport_relays{apps="same"}` and `{apps="different"}` on a relay's /metrics.
        static func relayAgreement(_ relay: Deployment) async throws -> (same: Int, different: Int) {
            let metrics = try await Curl.run(relay.adminURL("/metrics"), caFile: nil).body
            func value(_ label: String) -> Int {
                let line = metrics.split(separator: "\n").first { $0.hasPrefix("sallyport_relays{apps=\"\(label)\"}") }
                return line.flatMap { Double($0.split(separator: " ").last ?? "") }.map { Int($0) } ?? -1
            }
            return (value("same"), value("different"))
        }

        /// Polls until `relay` reports `expected`; records an issue with what it reports after `timeout`.
        static func waitForAgreement(_ relay: Deployment, _ expected: (same: Int, different: Int), timeout: Duration) async throws {
            let deadline = ContinuousClock.now + timeout
            var last = (same: -1, different: -1)
            while ContinuousClock.now < deadline {
                last = try await Self.relayAgreement(relay)
                if last == expected { return }
                try await Task.sleep(for: .milliseconds(200))
            }
            Issue.record("relay reports \(last) relays serving the same/other apps, not \(expected), after \(timeout)")
        }

        @Test("App files: each relay reads its own copy and reports the apps it serves; relays that differ say so, and converge within a couple of seconds of getting the same files, with the connectors serving the new apps through both")
        func appConfigurationConverges() async throws {
            try await Self.withCluster(hosts: ["app", "extra"]) { cluster, nginx in
                try await cluster.relays[0].startConnector()
                let a = cluster.relays[0]
                let b = cluster.relays[1]
                for relay in cluster.relays { try await Self.waitForAgreement(relay, (2, 0), timeout: .seconds(10)) }

                try a.writeApp(name: "extra", internalURL: nginx.baseURL + "/")
                try await Self.waitForAgreement(a, (1, 1), timeout: .seconds(3))
                try await Self.waitForAgreement(b, (1, 1), timeout: .seconds(3))
                try await a.relay?.waitForLog(containing: "other relays serve other apps than this one", timeout: .seconds(3))

                try b.writeApp(name: "extra", internalURL: nginx.baseURL + "/")
                for relay in cluster.relays { try await Self.waitForAgreement(relay, (2, 0), timeout: .seconds(3)) }
                try await a.relay?.waitForLog(containing: "every relay serves the same apps again", timeout: .seconds(3))
                for relay in cluster.relays {
                    #expect(try await Curl.run(relay.url("extra", "/"), caFile: relay.caFile).status == 200)
                    #expect(try await Curl.run(relay.url("app", "/"), caFile: relay.caFile).status == 200)
                }
            }
        }
    }
}
