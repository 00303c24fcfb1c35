import ArgumentParser
import Foundation
import SallyportPKI
import SallyportTesting

/// `sallyport-bench`: Sallyport next to nginx doing the same hops, on loopback, in one run. Run it through
/// `scripts/bench.sh`, which installs the tools and builds everything in release mode first.
@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sallyport-bench",
        abstract: "Measures Sallyport beside nginx (one hop, and two hops with mutual TLS between) with wrk and h2load.",
        discussion: "Benchmarks are not tests: numbers depend on the machine. Run scripts/bench.sh rather than this directly."
    )

    @Option(help: "Seconds each load runs.") var seconds = 10
    @Option(help: "Size of the large transfer each way, in MiB.") var transferMiB = 1024
    @Flag(help: "A quick pass: every case for one second and a 16 MiB transfer, to check the benchmark itself works.") var smoke = false
    @Flag(help: "Leave out KCD (which needs the Kerberos test bed: Samba, Apache with mod_auth_gssapi).") var noKCD = false
    @Option(help: "Write the results into this Markdown file, between its bench markers.") var output: String?
    @Option(help: "Where the Sallyport repository is (for the benchmark plugin).") var repository = FileManager.default.currentDirectoryPath
    @Option(help: "The build configuration of the benchmark plugin, as of sallyport.") var configuration = "release"
    @Option(help: "Measure only the request-rate rows whose name contains this text, and nothing else (to compare changes quickly).")
    var only: String?
    @Option(help: "Set everything up, print the addresses and process ids, and wait this many seconds before measuring (to attach perf).")
    var hold: Int?

    mutating func run() async throws {
        if self.smoke { (self.seconds, self.transferMiB) = (1, 16) }
        let work = try TestDirectory(prefix: "sallyport-bench")
        let files = Self.memoryScratch + "/files"
        defer {
            work.remove()
            try? FileManager.default.removeItem(atPath: Self.memoryScratch)
        }
        try Self.writeFiles(files, hugeMiB: self.transferMiB)
        let pki = try ThrowawayPKI.write(to: work.file("pki"))
        log("building the benchmark plugin (\(self.configuration))")
        let plugins = try await self.buildPlugin(work: work)
        let nginx = try await NginxSetups.start(directory: work, pki: pki, files: files)
        var kerberos: (bed: KerberosTestBed, apachePort: Int)?
        var report = Report(machine: Machine.describe(), seconds: self.seconds, configuration: self.configuration)
        if !self.noKCD {
            do {
                log("starting the Kerberos test bed")
                let environment = ["KRB_TESTBED_KDC_PORT": String(try FreePort.next()), "KRB_TESTBED_KPASSWD_PORT": String(try FreePort.next())]
                chmod(work.path, 0o755)  // Apache's workers (www-data) read the backend keytab inside
                let bed = try await KerberosTestBed.start(directory: work.file("bed"), environment: environment)
                let port = try FreePort.next()
                try await bed.startApache(port: port)
                kerberos = (bed, port)
            } catch {
                report.notes.append("KCD not measured: the Kerberos test bed did not start (\(error)).")
            }
        }
        var sallyport: SallyportSetup?
        var failure: (any Error)?
        do {
            sallyport = try await SallyportSetup.start(
                backendPort: nginx.backend.port, plugins: plugins, jwks: work.file("jwks.json"), kerberos: kerberos
            )
            try await self.measure(into: &report, nginx: nginx, sallyport: sallyport!, kerberos: kerberos?.bed)
        } catch {
            failure = error
        }
        await sallyport?.stop()
        await nginx.stop()
        await kerberos?.bed.stop()
        if let failure { throw failure }

        let markdown = report.markdown()
        print(markdown)
        if let output = self.output {
            try Report.write(markdown, into: output)
            log("wrote \(output)")
        }
    }

    func measure(into report: inout Report, nginx: NginxSetups, sallyport: SallyportSetup, kerberos: KerberosTestBed?) async throws {
        let bearer = try await sallyport.bearer()
        if let hold = self.hold {
            log("holding for \(hold) s: relay pid \(sallyport.relay.pid), connector pid \(sallyport.connector.pid), public port \(sallyport.deployment.publicPort) (apps pass, jwt, plugin, inprocess, kcd), nginx two hops port \(nginx.edge.port)")
            log("bearer: \(bearer)")
            try await Task.sleep(for: .seconds(hold))
        }
        let nginxTarget = { (port: Int, path: String) in Target(port: port, host: "localhost", path: path) }
        let rows: [(name: String, small: Target, large: Target?)] = [
            ("nginx reverse proxy, one hop", nginxTarget(nginx.oneHop.port, "/files/1k"), nginxTarget(nginx.oneHop.port, "/files/1m")),
            (Report.twoHops, nginxTarget(nginx.edge.port, "/files/1k"), nginxTarget(nginx.edge.port, "/files/1m")),
            ("Sallyport passthrough", sallyport.target("pass", path: "/files/1k"), sallyport.target("pass", path: "/files/1m")),
            (
                "Sallyport, JWT pre-authentication + header SSO", sallyport.target("jwt", path: "/files/1k", headers: [bearer]),
                sallyport.target("jwt", path: "/files/1m", headers: [bearer])
            ),
            ("Sallyport, trivial plugin handler in its host process", sallyport.target("plugin", path: "/files/1k"), nil),
            ("Sallyport, trivial plugin handler in process", sallyport.target("inprocess", path: "/files/1k"), nil),
        ]
        for row in rows {
            if let only = self.only, !row.name.localizedCaseInsensitiveContains(only) { continue }
            report.rows.append(try await self.loadRow(row.name, small: row.small, large: row.large))
        }
        if self.only != nil { return }
        if kerberos != nil {
            let kcdRows: [(String, Target)] = [
                ("Apache, Sallyport JWT pre-authentication + passthrough to an open path", sallyport.target("apache", path: "/open/1k", headers: [bearer])),
                ("Apache, Sallyport KCD, a ticket per request (warm cache)", sallyport.target("kcd", path: "/1k", headers: [bearer])),
                ("Apache, Sallyport KCD, connection-bound path (warm cache)", sallyport.target("kcd", path: "/bound/1k", headers: [bearer])),
            ]
            for (name, target) in kcdRows {
                report.kerberosRows.append(try await self.loadRow(name, small: target, large: nil))
            }
        }
        report.transfers = try await Transfers.measure(nginx: nginx, sallyport: sallyport, megabytes: self.transferMiB)
        report.memory = try await Transfers.memory(sallyport: sallyport)
        if let kerberos {
            report.kcd = try await KCDLatency.measure(sallyport: sallyport, bed: kerberos)
        }
    }

    func loadRow(_ name: String, small: Target, large: Target?) async throws -> Report.Row {
        log("measuring: \(name)")
        _ = try LoadGenerator.wrk(small, connections: 64, seconds: 1)  // warm-up: connections, caches, tickets
        var row = Report.Row(name: name)
        row.h1Small = try LoadGenerator.wrk(small, connections: 64, seconds: self.seconds)
        row.h2Small = try LoadGenerator.h2load(small, clients: 8, streams: 16, seconds: self.seconds)
        if let large {
            row.h1Large = try LoadGenerator.wrk(large, connections: 16, seconds: self.seconds)
            row.h2Large = try LoadGenerator.h2load(large, clients: 4, streams: 4, seconds: self.seconds)
        }
        return row
    }

    /// Memory-backed scratch space (/dev/shm) for the large files and the bodies nginx keeps: the disk
    /// must not be what is measured.
    static let memoryScratch = "/dev/shm/sallyport-bench-\(getpid())"

    /// The backend's files: 1 KiB and 1 MiB of text, and the large transfer (sparse) for both directions.
    static func writeFiles(_ directory: String, hugeMiB: Int) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Data(repeating: UInt8(ascii: "a"), count: 1024).write(to: URL(fileURLWithPath: directory + "/1k"))
        try Data(repeating: UInt8(ascii: "b"), count: 1024 * 1024).write(to: URL(fileURLWithPath: directory + "/1m"))
        guard FileManager.default.createFile(atPath: directory + "/huge", contents: nil),
            let handle = FileHandle(forWritingAtPath: directory + "/huge")
        else { throw BenchError("cannot create \(directory)/huge") }
        try handle.truncate(atOffset: UInt64(hugeMiB) * 1024 * 1024)
        try handle.close()
    }

    /// Builds Tests/Plugins/FaultySSO (its `faulty` handler sets a header and counts a metric) into a plugin directory.
    func buildPlugin(work: TestDirectory) async throws -> String {
        // The connector loads plugins against the API library next to its binary; without it every plugin row
        // would measure 502 pages. `swift build --product sallyport` alone does not build it.
        let sallyport = try BuiltProduct.path("sallyport")
        let api = URL(fileURLWithPath: sallyport).deletingLastPathComponent().appendingPathComponent("libSallyportPluginAPI.so").path
        guard FileManager.default.fileExists(atPath: api) else {
            throw BenchError("\(api) is missing: build with scripts/build.sh --configuration \(self.configuration) (scripts/bench.sh does)")
        }
        let package = self.repository + "/Tests/Plugins/FaultySSO"
        let scratch = self.repository + "/.build-bench-plugin"
        try await SwiftPackage.run(
            ["build", "-c", self.configuration, "--product", "FaultySSO", "--scratch-path", scratch], in: package, log: work.file("plugin-build.log")
        )
        let plugins = work.file("plugins")
        try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "\(scratch)/\(self.configuration)/libFaultySSO.so", toPath: plugins + "/libFaultySSO.so")
        return plugins
    }
}

func log(_ message: String) {
    FileHandle.standardError.write(Data("[bench] \(message)\n".utf8))
}
