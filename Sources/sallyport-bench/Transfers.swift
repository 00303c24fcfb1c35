import Foundation
import SallyportTesting

/// The large transfer each way, and the connector's memory idle and with many open streams.
enum Transfers {
    struct Result: Sendable {
        var name: String
        /// MB/s (10^6 bytes per second), as curl reports.
        var download: Double
        var upload: Double
        /// Largest growth of resident memory during the transfers, in bytes, per process watched.
        var growth: [(process: String, bytes: Int)]
    }

    static func measure(nginx: NginxSetups, sallyport: SallyportSetup, megabytes: Int) async throws -> [Result] {
        log("measuring: \(megabytes) MiB each way")
        let nginxResult = try await self.transfer(
            name: "nginx two hops", base: "https://localhost:\(nginx.edge.port)", ca: nginx.ca, watch: []
        )
        let sallyportResult = try await self.transfer(
            name: "Sallyport passthrough", base: sallyport.deployment.url("pass", ""), ca: sallyport.deployment.caFile,
            watch: [("relay", sallyport.relay), ("connector", sallyport.connector)]
        )
        return [nginxResult, sallyportResult]
    }

    static func transfer(name: String, base: String, ca: String, watch: [(String, ChildProcess)]) async throws -> Result {
        var peaks = [Int](repeating: 0, count: watch.count)
        let before = try watch.map { try $0.1.residentMemory() }
        func run(_ arguments: [String], expect: String) async throws -> Double {
            let log = FileManager.default.temporaryDirectory.appendingPathComponent("sallyport-bench-curl-\(UUID().uuidString.prefix(8))").path
            defer { try? FileManager.default.removeItem(atPath: log) }
            let curl = try ChildProcess.launch("/usr/bin/curl", ["-sS", "--http1.1", "--cacert", ca, "-o", "/dev/null"] + arguments, logFile: log)
            while curl.isRunning {
                for (index, process) in watch.enumerated() { peaks[index] = max(peaks[index], (try? process.1.residentMemory()) ?? 0) }
                try await Task.sleep(for: .milliseconds(50))
            }
            let output = curl.log().trimmingCharacters(in: .whitespacesAndNewlines)
            let fields = output.split(separator: " ")
            guard await curl.waitForExit(timeout: .seconds(5)) == 0, fields.count == 2, fields[1] == expect, let bytesPerSecond = Double(fields[0]) else {
                throw BenchError("\(name): curl \(arguments.joined(separator: " ")) gave \(output)")
            }
            return bytesPerSecond / 1_000_000
        }
        let files = Bench.memoryScratch + "/files"
        let download = try await run(["-w", "%{speed_download} %{http_code}", base + "/files/huge"], expect: "200")
        let upload = try await run(["-w", "%{speed_upload} %{http_code}", "-T", files + "/huge", base + "/sink"], expect: "204")
        return Result(
            name: name, download: download, upload: upload,
            growth: watch.enumerated().map { (process: $0.element.0, bytes: max(0, peaks[$0.offset] - before[$0.offset])) }
        )
    }

    struct Memory: Sendable {
        var relayIdle: Int
        var connectorIdle: Int
        var openStreams: Int
        var connectorWithStreams: Int
        var relayWithStreams: Int
    }

    /// The connector's resident memory idle (right after start) and with 1,000 requests open through it (10
    /// HTTP/2 connections of 100 streams each, to a backend path that answers after 30 s).
    static func memory(sallyport: SallyportSetup) async throws -> Memory {
        log("measuring: memory with 1,000 open streams")
        let target = sallyport.target("pass", path: "/slow")
        let log = sallyport.deployment.directory.file("h2load-open.log")
        let h2load = try ChildProcess.launch(
            "/usr/bin/h2load",
            ["-c", "10", "-m", "100", "-n", "1000", "-t", "1", "--connect-to", "127.0.0.1:\(target.port)", "https://\(target.host):\(target.port)/slow"],
            logFile: log
        )
        defer { h2load.signal(SIGKILL) }
        var open = 0
        for _ in 0..<150 {
            open = try await self.inFlight(sallyport: sallyport, app: "pass")
            if open >= 1000 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        try await Task.sleep(for: .milliseconds(500))
        return Memory(
            relayIdle: sallyport.idle.relay, connectorIdle: sallyport.idle.connector, openStreams: open,
            connectorWithStreams: try sallyport.connector.residentMemory(), relayWithStreams: try sallyport.relay.residentMemory()
        )
    }

    /// `sallyport_requests_in_flight{app="APP"}` from the relay's metrics.
    static func inFlight(sallyport: SallyportSetup, app: String) async throws -> Int {
        let metrics = try Command.run("/usr/bin/curl", ["-s", sallyport.deployment.adminURL("/metrics")]).output
        for line in metrics.split(separator: "\n") where line.hasPrefix("sallyport_requests_in_flight{") && line.contains("app=\"\(app)\"") {
            return Int(Double(line.split(separator: " ").last ?? "") ?? 0)
        }
        return 0
    }
}

/// KCD's cost when the ticket cache is cold: latency of a first request, and how many S4U exchanges 100
/// concurrent first requests of one user cause.
enum KCDLatency {
    struct Result: Sendable {
        /// A first request after the ticket cache was flushed, and the one after it: medians of 5, milliseconds.
        var cold: Double
        var warm: Double
        /// The concurrent first requests of one user that completed, and the S4U exchanges the KDC saw for them.
        var concurrentUsers: Int
        var s4u2self: Int
        var s4u2proxy: Int
    }

    static func measure(sallyport: SallyportSetup, bed: KerberosTestBed) async throws -> Result {
        log("measuring: cold KCD requests")
        let deployment = sallyport.deployment
        let bearer = try await sallyport.bearer(user: "bob@corp.example.test")
        let url = deployment.url("kcd", "/1k")
        func time() throws -> Double {
            let run = try Command.run(
                "/usr/bin/curl", ["-sS", "-o", "/dev/null", "--cacert", deployment.caFile, "-H", bearer, "-w", "%{http_code} %{time_total}", url]
            )
            let fields = run.output.split(separator: " ")
            guard fields.count == 2, fields[0] == "200", let seconds = Double(fields[1]) else { throw BenchError("KCD request: \(run.output)") }
            return seconds * 1000
        }
        func flush() async throws {
            try await deployment.sallyport(["kcd", "flush", "--all", "--config", deployment.directory.file("relay.yaml")])
        }
        var cold: [Double] = []
        var warm: [Double] = []
        for _ in 0..<5 {
            try await flush()
            cold.append(try time())
            warm.append(try time())
        }
        // 100 concurrent first requests of one user: one S4U2Self and one S4U2Proxy, not a hundred.
        try await flush()
        let before = try await bed.count(user: "bob")
        let burst = try Command.run(
            "/usr/bin/h2load",
            ["-c", "10", "-m", "10", "-n", "100", "-H", bearer, "--connect-to", "127.0.0.1:\(deployment.publicPort)", "https://kcd.localhost:\(deployment.publicPort)/1k"]
        )
        let result = try LoadGenerator.parseH2load(burst.output)
        guard result.failures == 0 else { throw BenchError("KCD burst failed: \(burst.output)") }
        let after = try await bed.count(user: "bob")
        func delta(_ key: String) -> Int { (after[key] ?? 0) - (before[key] ?? 0) }
        return Result(
            cold: median(cold), warm: median(warm), concurrentUsers: result.completed, s4u2self: delta("S4U2SELF"), s4u2proxy: delta("S4U2PROXY")
        )
    }

    static func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
}
