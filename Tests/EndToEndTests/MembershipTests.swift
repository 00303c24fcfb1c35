import Foundation
import HTTPTypes
import NIOCore
import NIOHTTPTypes
import SallyportConfig
import SallyportPKI
import SallyportTesting
import SallyportTunnel
import SallyportWire
import Synchronization
import Testing

extension EndToEnd {
    /// Connectors as managed members, with real processes, real TLS and the relay's real SQLite file: the
    /// deployment guide's path, token misuse, identity, renewal, moves, removal, status and the store.
    @Suite("Connectors as managed members")
    struct MembershipTests {
        /// `connectors list --json` of a deployment's relay.
        static func list(_ deployment: Deployment) async throws -> [[String: Any]] {
            let output = try await deployment.sallyport(["connectors", "list", "--json", "--config", deployment.directory.file("relay.yaml")])
            return try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String: Any]] ?? []
        }

        /// Requests `url` from `loops` parallel loops until stopped; every status is kept.
        final class Load: Sendable {
            final class Tally: Sendable {
                let statuses = Mutex<[Int]>([])
                let stopped = Atomic<Bool>(false)
            }

            private let tally = Tally()
            private let tasks: [Task<Void, Never>]

            init(url: String, caFile: String, loops: Int = 4) {
                let tally = self.tally
                self.tasks = (0..<loops).map { _ in
                    Task {
                        while !tally.stopped.load(ordering: .relaxed) {
                            let status = (try? await Curl.run(url, caFile: caFile).status) ?? -1
                            tally.statuses.withLock { $0.append(status) }
                        }
                    }
                }
            }

            /// Stops and returns every status seen.
            func stop() async -> [Int] {
                self.tally.stopped.store(true, ordering: .relaxed)
                for task in self.tasks { await task.value }
                return self.tally.statuses.withLock { $0 }
            }
        }

        @Test("The deployment guide's path: relay init, token, register, start, a request served; safe modes; list and groups")
        func guidePath() async throws {
            let directory = try TestDirectory(prefix: "sallyport-guide")
            defer { directory.remove() }
            let binary = try BuiltProduct.path("sallyport")
            let publicPort = try FreePort.next()
            let tunnelPort = try FreePort.next()
            let relayDirectory = directory.file("etc-relay")
            let initialise = try ChildProcess.launch(
                binary,
                [
                    "relay", "init", relayDirectory, "--name", "localhost", "--name", "127.0.0.1", "--public-listen", "127.0.0.1:\(publicPort)",
                    "--tunnel-listen", "127.0.0.1:\(tunnelPort)", "--trial-host", "app.localhost",
                ],
                logFile: directory.file("init.log")
            )
            #expect(await initialise.waitForExit(timeout: .seconds(30)) == 0)
            #expect(initialise.log().contains("SELF-SIGNED"))
            func mode(_ path: String) throws -> Int { (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? -1 }
            #expect(try mode(relayDirectory + "/ca") == 0o700)
            #expect(try mode(relayDirectory + "/ca/connectors-ca.key") == 0o600)
            #expect(try mode(relayDirectory + "/tls/tunnel.key") == 0o600)
            #expect(try mode(relayDirectory + "/secrets/session.key") == 0o600)
            // The relay's user and group: 0750 as the package makes /etc/sallyport and /var/lib/sallyport.
            #expect(try mode(relayDirectory) == 0o750)
            #expect(try mode(relayDirectory + "/state") == 0o750)
            // A second init never overwrites a relay's CA.
            let again = try ChildProcess.launch(binary, ["relay", "init", relayDirectory, "--name", "localhost"], logFile: directory.file("init2.log"))
            #expect(await again.waitForExit(timeout: .seconds(30)) == 1)
            #expect(again.log().contains("exists"))

            let nginx = try await Nginx.start(directory: directory)
            try """
                name: app
                externalURL: https://app.localhost/
                internalURL: \(nginx.baseURL)/
                connectorGroup: default
                preAuthentication: passthrough
                sso:
                  handler: passthrough
                """.write(toFile: relayDirectory + "/apps/app.yaml", atomically: true, encoding: .utf8)
            let relay = try ChildProcess.launch(binary, ["relay", "--config", relayDirectory + "/relay.yaml"], logFile: directory.file("relay.log"))
            defer { relay.signal(SIGKILL) }
            try await relay.waitForLog(containing: "relay listening", timeout: .seconds(30))
            #expect(try mode(relayDirectory + "/state/admin.sock") & 0o077 == 0)
            #expect(try mode(relayDirectory + "/state/relay.db") == 0o600)
            // What init makes is far from expiry: no warning.
            #expect(!relay.log().contains("expires soon"))

            let create = try ChildProcess.launch(
                binary, ["connectors", "token", "create", "--group", "default", "--config", relayDirectory + "/relay.yaml"], logFile: directory.file("token.log")
            )
            #expect(await create.waitForExit(timeout: .seconds(30)) == 0)
            let command = try #require(create.log().split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.first { $0.hasPrefix("sallyport connector register") })
            #expect(command.contains("--relay localhost:\(tunnelPort)"))
            // The printed command, as printed, plus where to write (the guide's host would use /etc/sallyport).
            let connectorDirectory = directory.file("etc-connector")
            let register = try ChildProcess.launch(
                "/bin/sh", ["-c", "\(binary)\(command.dropFirst("sallyport".count)) --name branch-1 --directory \(connectorDirectory)"],
                logFile: directory.file("register.log")
            )
            #expect(await register.waitForExit(timeout: .seconds(30)) == 0, "\(register.log())")
            #expect(try mode(connectorDirectory + "/connector.key") == 0o600)
            let token = try #require(command.split(separator: " ").last.map(String.init))
            let secret = token.split(separator: ".")[2]
            #expect(!relay.log().contains(secret), "the token's secret is in the relay's log")

            let connector = try ChildProcess.launch(binary, ["connector", "--config", connectorDirectory + "/connector.yaml"], logFile: directory.file("connector.log"))
            defer { connector.signal(SIGKILL) }
            try await connector.waitForLog(containing: "configuration applied", timeout: .seconds(30))
            let result = try await Curl.run("https://app.localhost:\(publicPort)/headers", caFile: relayDirectory + "/tls/public-trial-ca.pem")
            #expect(result.status == 200)

            let list = try ChildProcess.launch(binary, ["connectors", "list", "--config", relayDirectory + "/relay.yaml"], logFile: directory.file("list.log"))
            #expect(await list.waitForExit(timeout: .seconds(30)) == 0)
            let row = try #require(list.log().split(separator: "\n").first { $0.contains("branch-1") }, "\(list.log())")
            #expect(row.contains("default") && row.contains("active") && row.contains(SallyportVersion.current))
            let groups = try ChildProcess.launch(binary, ["groups", "list", "--config", relayDirectory + "/relay.yaml"], logFile: directory.file("groups.log"))
            #expect(await groups.waitForExit(timeout: .seconds(30)) == 0)
            #expect(groups.log().contains("app"))
            #expect(!groups.log().contains("warning"))

            // Stopped, the group warns that its app has no active connector once the connector is inactive.
            connector.signal(SIGTERM)
            _ = await connector.waitForExit(timeout: .seconds(30))
            relay.signal(SIGTERM)
            _ = await relay.waitForExit(timeout: .seconds(30))
            await nginx.stop()
        }

        @Test("Token misuse is refused with a message that says which, and nothing is written on the connector host")
        func tokenMisuse() async throws {
            let deployment = try Deployment(hosts: ["app"])
            try await deployment.startRelay()
            let other = try Deployment(hosts: ["other"])
            try await other.startRelay()
            func register(_ token: String, name: String, group: String? = nil) async throws -> String {
                let directory = deployment.directory.file("host-\(name)")
                var arguments = ["connector", "register", "--relay", "localhost:\(deployment.tunnelPort)", "--token", token, "--name", name, "--directory", directory]
                if let group { arguments += ["--group", group] }
                let output = try await deployment.sallyport(arguments, expectFailure: true)
                #expect(!FileManager.default.fileExists(atPath: directory), "files written after a refusal: \(output)")
                return output
            }

            let single = try await deployment.createToken(group: "default")
            _ = try await deployment.sallyport(
                ["connector", "register", "--relay", "localhost:\(deployment.tunnelPort)", "--token", single, "--name", "first", "--directory", deployment.directory.file("host-first")]
            )
            #expect(try await register(single, name: "reused").contains("already used"))

            let expiring = try await deployment.createToken(group: "default", expires: "1s")
            try await Task.sleep(for: .milliseconds(1500))
            #expect(try await register(expiring, name: "late").contains("expired"))

            let wrongGroup = try await deployment.createToken(group: "default")
            #expect(try await register(wrongGroup, name: "wrong", group: "finance").contains("registers connectors in group \"default\", not \"finance\""))

            #expect(try await register("not-a-token", name: "garbage").contains("not a Sallyport registration token"))
            let parts = single.split(separator: ".")
            let forged = "sp1.\(parts[1]).\(String(repeating: "A", count: 43)).\(parts[3])"
            #expect(try await register(forged, name: "forged").contains("knows no such token"))

            let foreign = try await other.createToken(group: "default")
            #expect(try await register(foreign, name: "foreign").contains("made by another relay"))

            // A withdrawn token is unknown; the list shows each token's state, never a secret.
            let withdrawn = try await deployment.createToken(group: "default")
            let withdrawnID = String(withdrawn.split(separator: ".")[1])
            try await deployment.sallyport(["connectors", "token", "delete", withdrawnID, "--config", deployment.directory.file("relay.yaml")])
            #expect(try await register(withdrawn, name: "withdrawn").contains("knows no such token"))
            let tokens = try await deployment.sallyport(["connectors", "token", "list", "--json", "--config", deployment.directory.file("relay.yaml")])
            let states = try (JSONSerialization.jsonObject(with: Data(tokens.utf8)) as? [[String: Any]] ?? []).map { "\($0["id"] ?? "")=\($0["state"] ?? "")" }
            #expect(states.contains("\(single.split(separator: ".")[1])=used"))
            #expect(states.contains("\(expiring.split(separator: ".")[1])=expired"))
            #expect(states.contains("\(wrongGroup.split(separator: ".")[1])=used"), "a wrong-group registration spends the token")
            #expect(!states.contains { $0.hasPrefix(withdrawnID) })
            #expect(!tokens.contains(String(single.split(separator: ".")[2])))

            let listed = try await Self.list(deployment)
            #expect(listed.map { $0["name"] as? String } == ["first"])
            await other.shutdown()
            await deployment.shutdown()
        }

        @Test("register --force on a registered host replaces its registration: the relay removes the old one, proven by its key, and lists one connector")
        func forceReplaces() async throws {
            let deployment = try Deployment(hosts: ["app"])
            try await deployment.startRelay()
            let directory = deployment.directory.file("host-branch")
            func register(force: Bool) async throws {
                let token = try await deployment.createToken(group: "default")
                var arguments = ["connector", "register", "--relay", "localhost:\(deployment.tunnelPort)", "--token", token, "--name", "branch", "--directory", directory]
                if force { arguments.append("--force") }
                _ = try await deployment.sallyport(arguments)
            }
            try await register(force: false)
            let first = try #require(try await Self.list(deployment).first?["id"] as? String)
            try await register(force: true)
            let listed = try await Self.list(deployment)
            #expect(listed.count == 1, "\(listed)")
            let second = try #require(listed.first?["id"] as? String)
            #expect(second != first)
            #expect(deployment.relay!.log().contains("replaced by a new registration of its host (\(second))"), "\(deployment.relay!.log())")
            // Another directory's --force proves nothing about this registration: it adds a connector, removes none.
            let elsewhere = deployment.directory.file("host-other")
            let token = try await deployment.createToken(group: "default")
            _ = try await deployment.sallyport(
                ["connector", "register", "--relay", "localhost:\(deployment.tunnelPort)", "--token", token, "--name", "other", "--directory", elsewhere, "--force"]
            )
            #expect(try await Self.list(deployment).compactMap { $0["id"] as? String }.contains(second))
            await deployment.shutdown()
        }

        @Test("A certificate is its connector's identity: a hello naming another gets its own id and group and only its group's apps")
        func identityComesFromTheCertificate() async throws {
            let deployment = try Deployment(hosts: ["alpha-app", "beta-app"])
            try deployment.writeApp(name: "alpha-app", internalURL: "http://127.0.0.1:9/", group: "alpha")
            try deployment.writeApp(name: "beta-app", internalURL: "http://127.0.0.1:9/", group: "beta")
            try await deployment.startRelay()
            _ = try await deployment.registration(name: "a", group: "alpha")
            _ = try await deployment.registration(name: "b", group: "beta")
            let listed = try await Self.list(deployment)
            let idA = try #require(listed.first { $0["name"] as? String == "a" }?["id"] as? String)

            // A's certificate, claiming to be b.
            let (channel, control) = try await TunnelHandshakeTests.dial(
                deployment, certificate: (deployment.directory.file("a/connector.pem"), deployment.directory.file("a/connector.key"))
            )
            let (welcome, apps): (ControlMessage?, ControlMessage?) = try await control.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                _ = try await iterator.next()
                try await outbound.write(.head(HTTPResponse(status: .ok)))
                try await ControlFraming.send(.hello(.init(connector: "b", host: "impostor", software: "test")), on: outbound)
                var messages = ControlReader(iterator: iterator)
                return (try await messages.next(), try await messages.next())
            }
            guard case .welcome(let identity)? = welcome, case .config(let set)? = apps else {
                Issue.record("expected welcome and config, got \(String(describing: welcome)), \(String(describing: apps))")
                return
            }
            #expect(identity.connectorID == idA)
            #expect(identity.group == "alpha")
            #expect(set.apps.map(\.name) == ["alpha-app"])
            channel.close(promise: nil)

            // A certificate from the connector CA that no registration issued: refused, and told why.
            let (unregistered, refusedControl) = try await TunnelHandshakeTests.dial(deployment)
            let refusal: ControlMessage? = try await refusedControl.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                _ = try await iterator.next()
                try await outbound.write(.head(HTTPResponse(status: .ok)))
                try await ControlFraming.send(.hello(.init(connector: "a", host: "impostor", software: "test")), on: outbound)
                var messages = ControlReader(iterator: iterator)
                return try await messages.next()
            }
            guard case .error(let text, _)? = refusal else {
                Issue.record("expected a refusal, got \(String(describing: refusal))")
                return
            }
            #expect(text.contains("no connector with certificate"))
            try await unregistered.closeFuture.get()
            await deployment.shutdown()
        }

        @Test("Certificates renew over the tunnel under load without a failed request; an expired one refuses to start")
        func renewalUnderLoad() async throws {
            let deployment = try Deployment(hosts: ["app"], connectors: ["certificateLifetime: 12s"])
            let nginx = try await Nginx.start(directory: deployment.directory)
            try deployment.writeApp(name: "app", internalURL: nginx.baseURL + "/")
            try await deployment.startRelay()
            let connector = try await deployment.startConnector()
            let first = try String(contentsOfFile: deployment.directory.file("connector-1/connector.pem"), encoding: .utf8)
            let load = Load(url: deployment.url("app", "/headers"), caFile: deployment.caFile)
            let deadline = ContinuousClock.now + .seconds(60)
            func renewals() -> Int { connector.log().components(separatedBy: "[SallyportConnector] certificate renewed").count - 1 }
            while renewals() < 3, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(200))
            }
            try await Task.sleep(for: .seconds(1))
            let statuses = await load.stop()
            #expect(renewals() >= 3, "\(connector.log().suffix(2000))")
            #expect(statuses.count > 50)
            #expect(statuses.allSatisfy { $0 == 200 }, "\(statuses.filter { $0 != 200 }.count) of \(statuses.count) failed: \(Set(statuses))")
            #expect(try String(contentsOfFile: deployment.directory.file("connector-1/connector.pem"), encoding: .utf8) != first)
            #expect(!connector.log().contains("tunnel connection to the relay failed"))

            // Offline past expiry: refuses to start, naming the command to register again.
            await deployment.stopConnector("connector-1")
            try await Task.sleep(for: .seconds(13))
            let expired = try await deployment.startConnector(waitForConfiguration: false)
            #expect(await expired.waitForExit(timeout: .seconds(30)) == 2)
            #expect(expired.log().contains("expired"))
            #expect(expired.log().contains("sallyport connector register"))
            await nginx.stop()
            await deployment.shutdown()
        }

        @Test("Removing a connector under load closes its tunnels within a second; its group's other connector carries on; it is refused and stops with status 3, saying how to register again")
        func removeUnderLoad() async throws {
            let deployment = try Deployment(hosts: ["app"])
            let nginx = try await Nginx.start(directory: deployment.directory)
            try deployment.writeApp(name: "app", internalURL: nginx.baseURL + "/")
            try await deployment.startRelay()
            let doomed = try await deployment.startConnector(name: "doomed")
            try await deployment.startConnector(name: "keeper")
            let id = try #require(try await Self.list(deployment).first { $0["name"] as? String == "doomed" }?["id"] as? String)
            let load = Load(url: deployment.url("app", "/headers"), caFile: deployment.caFile)
            try await Task.sleep(for: .seconds(2))
            let removed = ContinuousClock.now
            try await deployment.sallyport(["connectors", "remove", id, "--config", deployment.directory.file("relay.yaml")])
            try await doomed.waitForLog(containing: "tunnel closed", timeout: .seconds(5))
            let closedAfter = ContinuousClock.now - removed
            try await Task.sleep(for: .seconds(2))
            let statuses = await load.stop()
            #expect(closedAfter < .seconds(2), "tunnels closed after \(closedAfter)")
            #expect(statuses.allSatisfy { $0 == 200 }, "\(statuses.filter { $0 != 200 }.count) of \(statuses.count) failed")
            // Its next attempt is refused, it is told why, and it stops: distinct status 3, which the unit's
            // RestartPreventExitStatus= names, so systemd does not start it again to be refused again.
            try await doomed.waitForLog(containing: "no connector with certificate", timeout: .seconds(30))
            let status = await doomed.waitForExit(timeout: .seconds(30))
            #expect(status == 3, "\(doomed.log())")
            #expect(doomed.log().contains("This connector stops. To serve again, register it with a new token"), "\(doomed.log())")
            #expect(doomed.log().components(separatedBy: "no connector with certificate").count <= 4, "it stopped dialling: \(doomed.log())")
            let unit = try String(contentsOfFile: "\(EndToEnd.PackageTests.root)/config/systemd/sallyport-connector.service", encoding: .utf8)
            #expect(unit.contains("RestartPreventExitStatus=2 3"))
            #expect(try await Self.list(deployment).map { $0["name"] as? String } == ["keeper"])
            await nginx.stop()
            await deployment.shutdown()
        }

        @Test("Moving a connector to another group is live: it serves the new group's apps and stops taking the old group's, without a restart")
        func moveLive() async throws {
            let deployment = try Deployment(hosts: ["red", "blue"])
            let nginx = try await Nginx.start(directory: deployment.directory)
            try deployment.writeApp(name: "red", internalURL: nginx.baseURL + "/", group: "red")
            try deployment.writeApp(name: "blue", internalURL: nginx.baseURL + "/", group: "blue")
            try await deployment.startRelay()
            let mover = try await deployment.startConnector(name: "mover", group: "red")
            #expect(try await Curl.run(deployment.url("red", "/headers"), caFile: deployment.caFile).status == 200)
            #expect(try await Curl.run(deployment.url("blue", "/headers"), caFile: deployment.caFile).status == 503)
            let id = try #require(try await Self.list(deployment).first?["id"] as? String)
            try await deployment.sallyport(["connectors", "move", id, "--group", "blue", "--config", deployment.directory.file("relay.yaml")])
            try await mover.waitForLog(containing: "apps=blue", timeout: .seconds(10))
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await Curl.run(deployment.url("blue", "/headers"), caFile: deployment.caFile).status == 200)
            #expect(try await Curl.run(deployment.url("red", "/headers"), caFile: deployment.caFile).status == 503)
            #expect(try await Self.list(deployment).first?["group"] as? String == "blue")
            #expect(deployment.connectors["mover"] === mover)
            #expect(!mover.log().contains("connector stopped"))
            await nginx.stop()
            await deployment.shutdown()
        }

        @Test("A connector whose tunnels are gone is disconnected at once, inactive after inactiveAfter and removed after removeAfter")
        func inactiveThenRemoved() async throws {
            let deployment = try Deployment(hosts: ["app"], connectors: ["inactiveAfter: 2s", "removeAfter: 6s"])
            try deployment.writeApp(name: "app", internalURL: "http://127.0.0.1:9/")
            try await deployment.startRelay()
            try await deployment.startConnector()
            #expect(try await Self.list(deployment).first?["state"] as? String == "active")
            await deployment.stopConnector("connector-1")
            // Not counted as serving from the moment its last tunnel closed (it said it drains as it stops).
            #expect(try await Self.list(deployment).first?["state"] as? String == "disconnected")
            let disconnected = try await deployment.sallyport(["groups", "list", "--config", deployment.directory.file("relay.yaml")])
            #expect(disconnected.contains("warning: group default: apps but no active connector"), "\(disconnected)")
            try await Task.sleep(for: .seconds(3))
            let inactive = try await Self.list(deployment)
            #expect(inactive.first?["state"] as? String == "inactive")
            #expect(inactive.first?["tunnels"] as? Int == 0)
            let groups = try await deployment.sallyport(["groups", "list", "--config", deployment.directory.file("relay.yaml")])
            #expect(groups.contains("warning: group default: apps but no active connector"), "\(groups)")
            try await Task.sleep(for: .seconds(5))
            #expect(try await Self.list(deployment).isEmpty)
            #expect(deployment.relay?.log().contains("connector removed") ?? false)
            await deployment.shutdown()
        }

        @Test("A relay restart keeps the registry; a corrupted or unwritable database stops the relay with a clear error")
        func registrySurvivesAndBadDatabasesAreNamed() async throws {
            let deployment = try Deployment(hosts: ["app"])
            try await deployment.startRelay()
            try await deployment.startConnector()
            let before = try await Self.list(deployment)
            await deployment.stopRelay()
            try await deployment.startRelay()
            try await deployment.connectors["connector-1"]!.waitForLog(containing: "relay welcomed this connector", timeout: .seconds(30))
            let after = try await Self.list(deployment)
            #expect(after.map { $0["id"] as? String } == before.map { $0["id"] as? String })
            await deployment.stopConnector("connector-1")
            await deployment.stopRelay()

            let database = deployment.directory.file("state/relay.db")
            for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: database + suffix) }
            try Data(repeating: 0x5A, count: 8192).write(to: URL(fileURLWithPath: database))
            let corrupted = try ChildProcess.launch(deployment.binary, ["relay", "--config", deployment.directory.file("relay.yaml")], logFile: deployment.directory.file("corrupted.log"))
            #expect(await corrupted.waitForExit(timeout: .seconds(30)) != 0)
            #expect(corrupted.log().contains(database))
            #expect(corrupted.log().contains("move it away"))

            try FileManager.default.removeItem(atPath: database)
            try FileManager.default.createDirectory(atPath: database, withIntermediateDirectories: true)
            let unwritable = try ChildProcess.launch(deployment.binary, ["relay", "--config", deployment.directory.file("relay.yaml")], logFile: deployment.directory.file("unwritable.log"))
            #expect(await unwritable.waitForExit(timeout: .seconds(30)) != 0)
            #expect(unwritable.log().contains(database))
            #expect(unwritable.log().contains("cannot open"))
            await deployment.shutdown()
        }

        @Test("The relay re-reads its public certificate when the file changes, without a restart")
        func publicCertificateReloads() async throws {
            let deployment = try Deployment(hosts: ["app"])
            let nginx = try await Nginx.start(directory: deployment.directory)
            try deployment.writeApp(name: "app", internalURL: nginx.baseURL + "/")
            try await deployment.startRelay()
            try await deployment.startConnector()
            #expect(try await Curl.run(deployment.url("app", "/headers"), caFile: deployment.caFile).status == 200)
            // The throwaway certificates last 7 days: the relay warns, naming the file.
            #expect(deployment.relay!.log().contains("file=\(deployment.pki.publicCertificate) listener=public"))
            #expect(deployment.relay!.log().contains("a certificate expires soon: replace it"))
            let next = try CertificateAuthority.generate(commonName: "Next public CA", validity: .seconds(90 * 86400))
            let leaf = try next.issueServer(commonName: "app.localhost", dnsNames: ["app.localhost"], validity: .seconds(60 * 86400))
            let nextCA = try deployment.directory.write("next-ca.pem", next.certificatePEM)
            try leaf.privateKeyPEM.write(toFile: deployment.pki.publicKey, atomically: true, encoding: .utf8)
            try leaf.chainPEM.write(toFile: deployment.pki.publicCertificate, atomically: true, encoding: .utf8)
            try await deployment.relay!.waitForLog(containing: "certificates reloaded", timeout: .seconds(10))
            #expect(try await Curl.run(deployment.url("app", "/headers"), caFile: nextCA).status == 200)
            #expect(try await Curl.run(deployment.url("app", "/headers"), caFile: deployment.caFile).status != 200)
            // SIGHUP reloads too; the new certificate is far from expiry, so no new warning for it.
            let warnings = deployment.relay!.log().components(separatedBy: "listener=public").count
            deployment.relay!.signal(SIGHUP)
            try await deployment.relay!.waitForLog(containing: "SIGHUP: reloading apps and certificates", timeout: .seconds(10))
            try await Task.sleep(for: .milliseconds(300))
            #expect(deployment.relay!.log().components(separatedBy: "certificates reloaded").count - 1 >= 3)
            #expect(deployment.relay!.log().components(separatedBy: "listener=public").count == warnings + 1, "only the reload line names the listener")
            await nginx.stop()
            await deployment.shutdown()
        }

        @Test("Bring your own PKI: a certificate from a trusted CA is accepted only once `connectors add` registered it, and not past its end")
        func bringYourOwnPKI() async throws {
            let own = try CertificateAuthority.generate(commonName: "Corp connector CA")
            let directory = try TestDirectory(prefix: "sallyport-byo")
            defer { directory.remove() }
            let caFile = try directory.write("own-ca.pem", own.certificatePEM)
            let deployment = try Deployment(hosts: ["app"], connectors: ["trustedCAs: [\(caFile)]"])
            let nginx = try await Nginx.start(directory: deployment.directory)
            try deployment.writeApp(name: "app", internalURL: nginx.baseURL + "/")
            try await deployment.startRelay()
            // Short-lived, to see what its end does; the relay renews only the certificates it issued.
            let issued = try own.issueClient(commonName: "corp-connector-7", validity: .seconds(15))
            let certificate = try deployment.directory.write("own/connector.pem", issued.chainPEM)
            let key = try deployment.directory.write("own/connector.key", issued.privateKeyPEM)

            let early = try await deployment.startConnector(name: "own", certificate: (certificate, key), waitForConfiguration: false)
            try await early.waitForLog(containing: "no connector with certificate", timeout: .seconds(30))
            await deployment.stopConnector("own")

            try await deployment.sallyport(["connectors", "add", "--certificate", certificate, "--group", "default", "--config", deployment.directory.file("relay.yaml")])
            try await deployment.startConnector(name: "own", certificate: (certificate, key))
            #expect(try await Curl.run(deployment.url("app", "/headers"), caFile: deployment.caFile).status == 200)
            #expect(try await Self.list(deployment).first?["name"] as? String == "corp-connector-7")

            // The relay does not renew a certificate it did not issue, and says so.
            #expect(deployment.connectors["own"]!.log().contains("comes from your own PKI"))
            // Its certificate's end ends its tunnels, and TLS refuses it from then on.
            try await deployment.relay!.waitForLog(containing: "the connector's certificate expired; closing its tunnel", timeout: .seconds(30))
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await Curl.run(deployment.url("app", "/headers"), caFile: deployment.caFile).status == 503)
            #expect(!(deployment.relay?.log().contains("connector certificate renewed") ?? true))
            await nginx.stop()
            await deployment.shutdown()
        }
    }
}
