import Foundation
import SallyportTesting
import Testing

extension EndToEnd {
    /// The package as an administrator runs it: the .deb installed, a relay host and a connector host (network
    /// namespaces; the connector's may only dial the relay's tunnel port), docs/deployment.md's "With the Debian
    /// package" commands run as written, and each service run as its unit runs it: the `sallyport` user, the
    /// unit's capabilities and no-new-privileges, a read-only file system but for the unit's writable paths, a
    /// private /tmp, and (relay) the sockets of sallyport-relay.socket. Every other test runs as root, where
    /// what the service user may not do (issue 26: a socket option that needs CAP_NET_ADMIN) goes unnoticed.
    @Suite("Packaged services", .serialized)
    struct PackagedServicesTests {
        static let root = PackageTests.root
        static let units = "/lib/systemd/system"

        /// The ```sh blocks of docs/deployment.md's section `heading`, each with the host its first line names
        /// (`# relay host`, `# connector host`).
        static func blocks(under heading: String) throws -> [(host: String, lines: [String])] {
            try Self.fencedBlocks(under: heading, language: "sh").map { block in
                var lines = block
                let host = try #require(lines.first?.hasPrefix("# ") == true ? String(lines.removeFirst().dropFirst(2)) : nil, "a block without its host")
                return (host, lines)
            }
        }

        /// The lines of each ```language block of docs/deployment.md's section `heading` (its `## ` or `### `
        /// heading line), without the indentation of a block inside a list.
        static func fencedBlocks(under heading: String, language: String) throws -> [[String]] {
            let text = try String(contentsOfFile: "\(Self.root)/docs/deployment.md", encoding: .utf8)
            let section = try #require(text.components(separatedBy: "\n\(heading)\n").dropFirst().first?.components(separatedBy: "\n## ").first)
            var blocks: [[String]] = []
            var current: (language: String, lines: [String])?
            var indentation = 0
            for line in section.components(separatedBy: "\n") {
                let trimmed = line.drop { $0 == " " }
                if current == nil, trimmed.hasPrefix("```") {
                    current = (String(trimmed.dropFirst(3)), [])
                    indentation = line.count - trimmed.count
                } else if let block = current, trimmed == "```" {
                    if block.language == language { blocks.append(block.lines) }
                    current = nil
                } else if current != nil {
                    current!.lines.append(String(line.dropFirst(min(indentation, line.count - trimmed.count))))
                }
            }
            return blocks
        }

        @Test("deployment.md's package commands, run as written on a relay host and a connector host, publish an app; both services run as the sallyport user in their units' sandboxes, reload on the unit's signal, and doctor is green")
        func asPackaged() async throws {
            let installed = try Command.run("/usr/bin/dpkg-query", ["-W", "-f", "${Status}", "sallyport"])
            try #require(!installed.output.contains("install ok installed"), "a sallyport package is installed on this machine; the test does not touch it")
            let work = try TestDirectory(prefix: "sallyport-packaged")
            defer { work.remove() }
            chmod(work.path, 0o755)
            let binaries = URL(fileURLWithPath: try BuiltProduct.path("sallyport")).deletingLastPathComponent().path
            let built = try Command.run(
                "/usr/bin/bash", ["scripts/package.sh", "--configuration", "debug", "--bin", binaries, "--output", work.path], directory: Self.root
            )
            try #require(built.status == 0, "\(built.output)")
            defer {
                _ = try? Command.run("/usr/bin/dpkg", ["--purge", "sallyport"])
                // Purge leaves what the administrator made; this test made it.
                for directory in ["/etc/sallyport", "/var/lib/sallyport"] { try? FileManager.default.removeItem(atPath: directory) }
            }

            let relayNamespace = try NetworkNamespace(index: 0)
            defer { relayNamespace.remove() }
            let connectorNamespace = try NetworkNamespace(index: 1)
            defer { connectorNamespace.remove() }
            let link = try relayNamespace.link(to: connectorNamespace)
            try relayNamespace.setHosts(["relay.example.com": "127.0.0.1", "wiki.apps.example.com": "127.0.0.1"])
            try connectorNamespace.setHosts(["relay.example.com": link.here, "wiki.corp.internal": "127.0.0.1"])
            // The private network's firewall: out to the relay's tunnel port only.
            try connectorNamespace.allowOnly([(host: link.here, port: 8443)])
            // dpkg makes /etc/sallyport and /var/lib/sallyport on the relay host; the connector host's are its own.
            let hosts = [
                "relay host": TestHost(name: "relay host", namespace: relayNamespace),
                "connector host": try TestHost.make(
                    name: "connector host", namespace: connectorNamespace, root: work.file("connector-host"), targets: ["/etc/sallyport", "/var/lib/sallyport"]
                ),
            ]

            // The internal app, on the connector host's loopback.
            let site = work.file("wiki")
            try FileManager.default.createDirectory(atPath: site, withIntermediateDirectories: true)
            _ = try work.write("wiki/index.html", "the wiki's home page\n")
            let backendCommand = connectorNamespace.command("/usr/bin/python3", ["-u", "-m", "http.server", "8080", "--bind", "127.0.0.1", "--directory", site])
            let backend = try ChildProcess.launch(backendCommand.executable, backendCommand.arguments, logFile: work.file("backend.log"))
            defer { backend.signal(SIGKILL) }
            try await backend.waitForLog(containing: "Serving HTTP", timeout: .seconds(10))

            var services: [String: ChildProcess] = [:]
            defer {
                // socket_unit.py passes SIGTERM on to the relay; the packaged binary's processes go in any case.
                for service in services.values { service.signal(SIGTERM) }
                _ = try? Command.run("/usr/bin/pkill", ["-KILL", "-f", "^/usr/bin/sallyport "])
            }
            var token: String?
            var outputs: [String] = []
            for (hostName, lines) in try Self.blocks(under: "## With the Debian package") {
                let host = try #require(hosts[hostName], "deployment.md names a host the test does not know: \(hostName)")
                // Lines joined into scripts, but for `sudo systemctl`, which the test does as systemd would.
                var script: [String] = []
                func runScript() throws {
                    guard !script.isEmpty else { return }
                    var text = script.joined(separator: "\n")
                    if let token { text = text.replacingOccurrences(of: "sp1.…", with: token) }
                    let (status, output) = try host.shell(text, in: work.path)
                    outputs.append("$ \(text)\n\(output)")
                    #expect(status == 0, "on the \(hostName):\n$ \(text)\n\(output)")
                    if let found = output.range(of: #"sp1\.[A-Za-z0-9._-]+"#, options: .regularExpression) { token = String(output[found]) }
                    script = []
                }
                for line in lines {
                    let words = line.split(separator: " ").map(String.init)
                    guard words.starts(with: ["sudo", "systemctl"]) else {
                        script.append(line)
                        continue
                    }
                    try runScript()
                    switch words.dropFirst(2).joined(separator: " ") {
                    case "enable --now sallyport-relay":
                        let service = try ServiceUnit(path: "\(Self.units)/sallyport-relay.service")
                        #expect(service.list("Requires").contains("sallyport-relay.socket"))
                        let sockets = try ServiceUnit(path: "\(Self.units)/sallyport-relay.socket")
                        services["relay"] = try host.start(
                            service, sockets: sockets, socketHolder: ["/usr/bin/python3", "-u", EndToEnd.resource("socket_unit.py")], log: work.file("relay.log")
                        )
                        try await services["relay"]!.waitForLog(containing: "relay listening", timeout: .seconds(60))
                    case "enable --now sallyport-connector":
                        let service = try ServiceUnit(path: "\(Self.units)/sallyport-connector.service")
                        services["connector"] = try host.start(service, log: work.file("connector.log"))
                        try await services["connector"]!.waitForLog(containing: "tunnel connected", timeout: .seconds(60))
                    case "reload sallyport-relay":
                        // ExecReload= with $MAINPID: the relay's own pid, as socket_unit.py reports it.
                        let relay = try #require(services["relay"])
                        let pid = try #require(relay.log().components(separatedBy: "the service runs as pid ").last?.split(separator: "\n").first)
                        let reload = try ServiceUnit(path: "\(Self.units)/sallyport-relay.service").require("ExecReload")
                        let (status, output) = try Command.run("/bin/sh", ["-c", reload.replacingOccurrences(of: "$MAINPID", with: String(pid))])
                        #expect(status == 0, "\(reload): \(output)")
                        try await relay.waitForLog(containing: "SIGHUP: reloading", timeout: .seconds(10))
                    default:
                        Issue.record("deployment.md runs `\(line)`, which the test does not do as systemd would")
                    }
                }
                try runScript()
            }
            let transcript = outputs.joined(separator: "\n")
            let relayLog = services["relay"]?.log() ?? ""
            let connectorLog = services["connector"]?.log() ?? ""
            let context = "\(transcript)\n--- relay\n\(relayLog)\n--- connector\n\(connectorLog)"
            // The last command, curl as the guide shows it, reached the app through the connector.
            #expect(transcript.hasSuffix("the wiki's home page\n"), "\(context)")
            #expect(transcript.contains("branch-1") && transcript.contains(" active "), "connectors list shows the connector active: \(context)")
            #expect(!transcript.contains("FAIL"), "doctor is green on both hosts: \(context)")
            // No kcd app: the connector host's doctor says nothing of a keytab it does not need.
            #expect(!transcript.contains("kerberos.keytab"), "\(transcript)")
            #expect(services["relay"]?.isRunning == true && services["connector"]?.isRunning == true, "\(context)")
            #expect(!relayLog.contains("Permission denied") && !connectorLog.contains("Permission denied"), "\(context)")
            // The relay took systemd's sockets rather than binding its own.
            #expect(relayLog.contains("systemd.sockets="), "\(relayLog)")
            // As the package made them, whatever init did.
            for directory in ["/etc/sallyport", "/var/lib/sallyport"] {
                let attributes = try FileManager.default.attributesOfItem(atPath: directory)
                #expect((attributes[.posixPermissions] as? Int) == 0o750, "\(directory) is 0750")
                #expect(attributes[.ownerAccountName] as? String == "sallyport", "\(directory) belongs to sallyport")
            }
            for service in services.values { await service.terminate(timeout: .seconds(10)) }
        }
    }
}
