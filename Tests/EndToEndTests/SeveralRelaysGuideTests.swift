import Foundation
import SallyportPKI
import SallyportTesting
import Testing
import Yams

extension EndToEnd {
    /// docs/deployment.md's "Several relays" set-up, run as written: a database created on a PostgreSQL server
    /// that offers TLS (relays verify it, `verify-full`), two relay hosts, a balancer host running HAProxy with
    /// the guide's configuration, and a connector host; each host a network namespace with its own
    /// `/etc/sallyport` and `/tmp`, and each address the guide's name (relay-a.example.com, ...).
    @Suite("Several relays, as the guide sets them up")
    struct SeveralRelaysGuideTests {
        static let heading = "## Several relays (high availability)"

        /// `overlay` merged into the YAML file at `path`: mappings key by key, anything else replaced.
        static func merge(_ overlay: String, into path: String) throws {
            func merged(_ base: Any?, _ top: Any?) -> Any? {
                guard let base = base as? [String: Any], let top = top as? [String: Any] else { return top }
                return base.merging(top) { merged($0, $1) as Any }
            }
            let base = try Yams.load(yaml: String(contentsOfFile: path, encoding: .utf8))
            let result = merged(base, try Yams.load(yaml: overlay))
            try Yams.dump(object: result, sortKeys: true).write(toFile: path, atomically: true, encoding: .utf8)
        }

        @Test("The guide's commands, as written on two relay hosts, a balancer and a connector host, publish an app through either relay; the relays verify the database's TLS certificate, and a token made on one relay registers at the other")
        func asWritten() async throws {
            let work = try TestDirectory(prefix: "sallyport-relays-guide")
            defer { work.remove() }
            chmod(work.path, 0o755)
            let binaries = URL(fileURLWithPath: try BuiltProduct.path("sallyport")).deletingLastPathComponent().path
            let path = ["PATH": "\(binaries):/usr/sbin:/usr/bin:/sbin:/bin"]

            // The administrator's own certificates: the apps' public one, and the database server's.
            let authority = try CertificateAuthority.generate(commonName: "Example Corp test CA")
            let apps = try authority.issueServer(commonName: "*.apps.example.com", dnsNames: ["*.apps.example.com"], validity: .seconds(86400 * 90))
            let database = try authority.issueServer(commonName: "db.example.internal", dnsNames: ["db.example.internal"], validity: .seconds(86400 * 90))
            let caFile = try work.write("example-ca.pem", authority.certificatePEM)
            let databaseCertificate = try work.write("db.pem", database.chainPEM)
            let databaseKey = try work.write("db.key", database.privateKeyPEM)

            // Four hosts; the balancer and the connector reach each relay by a link of its own.
            let namespaces = try (0..<4).map { try NetworkNamespace(index: $0) }
            defer { namespaces.forEach { $0.remove() } }
            let (a, b, balancer, connector) = (namespaces[0], namespaces[1], namespaces[2], namespaces[3])
            let aToBalancer = try a.link(to: balancer)
            let bToBalancer = try b.link(to: balancer)
            let connectorToBalancer = try connector.link(to: balancer)
            let connectorToA = try connector.link(to: a)
            let connectorToB = try connector.link(to: b)
            // Each relay reaches the database at the host's end of its own veth pair.
            try a.setHosts(["db.example.internal": a.hostAddress])
            try b.setHosts(["db.example.internal": b.hostAddress])
            try balancer.setHosts([
                "relay-a.example.com": aToBalancer.here, "relay-b.example.com": bToBalancer.here, "wiki.apps.example.com": "127.0.0.1",
            ])
            try connector.setHosts([
                "relays.example.com": connectorToBalancer.there, "relay-a.example.com": connectorToA.there,
                "relay-b.example.com": connectorToB.there, "wiki.corp.internal": "127.0.0.1",
            ])

            let postgres = try await PostgresServer.start(
                superuser: "postgres", addresses: [a.hostAddress, b.hostAddress], tls: (databaseCertificate, databaseKey),
                port: 5432  // the guide names no port: only on the test networks' addresses, so no other server's
            )

            let own = ["/etc/sallyport", "/tmp"]
            let hosts: [String: TestHost] = [
                "database host": TestHost(
                    name: "database host", namespace: nil,
                    environment: ["PGHOST": postgres.host, "PGPORT": String(postgres.port), "PGUSER": postgres.user, "PGPASSWORD": postgres.password]
                ),
                "relay-a host": try TestHost.make(name: "relay-a host", namespace: a, root: work.file("relay-a"), targets: own, environment: path),
                "relay-b host": try TestHost.make(name: "relay-b host", namespace: b, root: work.file("relay-b"), targets: own, environment: path),
                "balancer host": try TestHost.make(
                    name: "balancer host", namespace: balancer, root: work.file("balancer"), targets: ["/etc/haproxy"], environment: path
                ),
                "connector host": try TestHost.make(
                    name: "connector host", namespace: connector, root: work.file("connector"), targets: own, environment: path
                ),
            ]
            let relayHosts = ["relay-a host", "relay-b host"]
            // What the administrator brings to relay A: the apps' certificate, where `/path/to/` says.
            _ = try work.write("relay-a/tmp/apps.pem", apps.chainPEM)
            _ = try work.write("relay-a/tmp/apps.key", apps.privateKeyPEM)
            let databasePassword = "db-" + UUID().uuidString.prefix(8).lowercased()

            let backendCommand = connector.command("/usr/bin/python3", ["-u", "-m", "http.server", "8080", "--bind", "127.0.0.1", "--directory", work.file("wiki")])
            _ = try work.write("wiki/index.html", "the wiki's home page\n")
            let backend = try ChildProcess.launch(backendCommand.executable, backendCommand.arguments, logFile: work.file("backend.log"))
            var services: [String: ChildProcess] = ["backend": backend]
            defer { for service in services.values { service.signal(SIGKILL) } }
            try await backend.waitForLog(containing: "Serving HTTP", timeout: .seconds(10))

            var transcript: [String] = []
            var token: String?
            func run(_ hostName: String, _ lines: [String], input: String = "") throws {
                let host = try #require(hosts[hostName], "deployment.md names a host the test does not know: \(hostName)")
                var text = lines.joined(separator: "\n").replacingOccurrences(of: "/path/to/", with: "/tmp/")
                if let token { text = text.replacingOccurrences(of: "sp1.…", with: token) }
                let (status, output) = try host.shell(text, in: "/", input: input)
                transcript.append("[\(hostName)] $ \(text)\n\(output)")
                #expect(status == 0, "on the \(hostName):\n$ \(text)\n\(output)")
                if let found = output.range(of: #"sp1\.[A-Za-z0-9._-]+"#, options: .regularExpression) { token = String(output[found]) }
            }
            func start(_ hostName: String, _ line: String, waitingFor text: String) async throws {
                let host = try #require(hosts[hostName])
                let service = try host.launch(line, in: "/", log: work.file("\(hostName).log"))
                services[hostName] = service
                try await service.waitForLog(containing: text, timeout: .seconds(60))
            }

            let commands = try PackagedServicesTests.blocks(under: Self.heading)
            let yaml = try PackagedServicesTests.fencedBlocks(under: Self.heading, language: "yaml")
            let store = try #require(yaml.first { $0.contains { $0.contains("caFile: tls/db-ca.pem") } }).joined(separator: "\n")
            let ownAddresses = try #require(yaml.first { $0.first == "# relay B's relay.yaml" }).joined(separator: "\n")
            let haproxy = try #require(try PackagedServicesTests.fencedBlocks(under: Self.heading, language: "").first { $0.first == "defaults" })
            let app = try #require(
                try PackagedServicesTests.fencedBlocks(under: "## 6. Publish an app (relay host)", language: "yaml").first, "step 6's app file"
            )

            for (hostName, lines) in commands {
                switch hostName {
                case "database host":
                    // createuser --pwprompt asks twice; with no terminal, it reads standard input.
                    try run(hostName, lines, input: "\(databasePassword)\n\(databasePassword)\n")
                case "relay-a host" where lines.first?.contains("relay init") == true:
                    try run(hostName, lines)
                    // The administrator's copy to the other relay host.
                    try FileManager.default.copyItem(atPath: work.file("relay-a/tmp/sallyport-relay.tgz"), toPath: work.file("relay-b/tmp/sallyport-relay.tgz"))
                case "every relay host" where lines.contains { $0.contains("db-password") }:
                    for relay in relayHosts {
                        try run(relay, lines, input: databasePassword)
                        // Step 3's prose: the database's CA, and its relay.yaml naming the database.
                        let etc = work.file(relay.replacingOccurrences(of: " host", with: "") + "/etc/sallyport")
                        try FileManager.default.copyItem(atPath: caFile, toPath: etc + "/tls/db-ca.pem")
                        try Self.merge(store, into: etc + "/relay.yaml")
                        // Step 4: its own addresses: the name connectors dial it by, the address the balancer checks.
                        let isA = relay == "relay-a host"
                        var addresses = ownAddresses.replacingOccurrences(of: "10.0.0.6", with: isA ? aToBalancer.here : bToBalancer.here)
                        if isA { addresses = addresses.replacingOccurrences(of: "relay-b.example.com:8443", with: "relay-a.example.com:8443") }
                        try Self.merge(addresses, into: etc + "/relay.yaml")
                    }
                case "every relay host":
                    #expect(lines == ["sallyport relay --config /etc/sallyport/relay.yaml"], "\(lines)")
                    for relay in relayHosts {
                        // Step 6's app, deployed alike to every relay, as the table says.
                        let etc = work.file(relay.replacingOccurrences(of: " host", with: "") + "/etc/sallyport")
                        _ = try app.joined(separator: "\n").write(toFile: etc + "/apps/wiki.yaml", atomically: true, encoding: .utf8)
                        try await start(relay, lines[0], waitingFor: "relay listening")
                    }
                    // Step 5, on the balancer host, as the guide says HAProxy runs.
                    try haproxy.joined(separator: "\n").appending("\n").write(toFile: work.file("balancer/etc/haproxy/haproxy.cfg"), atomically: true, encoding: .utf8)
                    let haproxyService = try hosts["balancer host"]!.launch("haproxy -f /etc/haproxy/haproxy.cfg", in: "/", log: work.file("haproxy.log"))
                    services["balancer host"] = haproxyService
                case "connector host":
                    let daemon = "sallyport connector --config /etc/sallyport/connector.yaml"
                    try run(hostName, lines.filter { $0 != daemon })
                    #expect(lines.last == daemon)
                    try await start(hostName, daemon, waitingFor: "configuration applied")
                default:
                    try run(hostName, lines)
                }
            }
            let context = {
                transcript.joined(separator: "\n") + services.map { "\n--- \($0.key)\n\($0.value.log().suffix(4000))" }.joined()
            }

            // The connector dials both relays (it learned relay B's address from the one it reached).
            let connectorService = try #require(services["connector host"], "\(context())")
            let deadline = ContinuousClock.now + .seconds(20)
            for relay in relayHosts {
                while !(services[relay]?.log().contains("connector connected") ?? false) && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(100))
                }
                #expect(services[relay]?.log().contains("connector connected") == true, "\(relay) holds no tunnel: \(context())")
            }
            // Users through the balancer, and through each relay by its own address; first, the balancer's
            // checks find the relays up (every 500 ms).
            let balancerHost = try #require(hosts["balancer host"])
            let checked = ContinuousClock.now + .seconds(10)
            while try balancerHost.shell("curl -s -o /dev/null --max-time 2 --cacert \(caFile) https://wiki.apps.example.com/", in: "/").status != 0,
                ContinuousClock.now < checked
            {
                try await Task.sleep(for: .milliseconds(200))
            }
            var fetched: [String] = []
            for resolve in ["", "--resolve wiki.apps.example.com:443:\(aToBalancer.here)", "--resolve wiki.apps.example.com:443:\(bToBalancer.here)"] {
                let (status, output) = try balancerHost.shell(
                    "curl -sS --max-time 10 --retry 0 --cacert \(caFile) \(resolve) https://wiki.apps.example.com/", in: "/"
                )
                fetched.append(output)
                #expect(status == 0 && output == "the wiki's home page\n", "curl \(resolve): \(output)\n\(context())")
            }
            // Each relay lists the connector as active, with tunnels to itself.
            for relay in relayHosts {
                let (status, output) = try hosts[relay]!.shell("sallyport connectors list --config /etc/sallyport/relay.yaml", in: "/")
                #expect(status == 0 && output.contains("branch-1") && output.contains(" active "), "\(relay): \(output)")
            }
            // A token made through relay B is redeemed at relay A directly.
            let (made, madeOutput) = try hosts["relay-b host"]!.shell("sallyport connectors token create --group default --config /etc/sallyport/relay.yaml", in: "/")
            let second = try #require(madeOutput.range(of: #"sp1\.[A-Za-z0-9._-]+"#, options: .regularExpression).map { String(madeOutput[$0]) }, "\(made): \(madeOutput)")
            let (registered, registerOutput) = try hosts["connector host"]!.shell(
                "sallyport connector register --relay relay-a.example.com:8443 --token \(second) --name branch-2 --directory /tmp/branch-2", in: "/"
            )
            #expect(registered == 0, "a token of relay B at relay A: \(registerOutput)")
            // The relays' store went over TLS, verified against the guide's caFile (verify-full).
            let encrypted = try await postgres.query("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND usename = 'sallyport'")
            #expect((Int(encrypted.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) > 0, "no TLS connection from the relays: \(encrypted)")
            let unencrypted = try await postgres.query("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE NOT ssl AND usename = 'sallyport'")
            #expect(unencrypted.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
            #expect(connectorService.isRunning, "\(context())")
            for service in services.values { await service.terminate(timeout: .seconds(10)) }
            await postgres.stop()
        }
    }
}
