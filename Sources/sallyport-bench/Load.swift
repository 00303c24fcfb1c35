import Foundation
import SallyportTesting

/// What one load run measured.
struct LoadResult: Sendable {
    var requestsPerSecond: Double
    /// 99th percentile latency in milliseconds (wrk only; h2load prints no percentiles).
    var p99Milliseconds: Double?
    /// Requests that failed or got a status other than 2xx/3xx.
    var failures: Int
    /// Requests completed.
    var completed: Int
}

/// One target for the load generators: where to connect, the Host (or :authority) to send, extra headers.
struct Target: Sendable {
    /// Port on 127.0.0.1 (TLS).
    var port: Int
    /// `app.localhost` and the like: sent as Host (wrk) and used as :authority and SNI (h2load).
    var host: String
    var path: String
    var headers: [String] = []
}

/// wrk (HTTP/1.1, keep-alive) and h2load (HTTP/2, nghttp2) from Debian's packages.
enum LoadGenerator {
    /// wrk with `connections` connections on 2 threads for `seconds`; the Host header names the app, the
    /// address is 127.0.0.1 (wrk has no option to resolve a name elsewhere).
    static func wrk(_ target: Target, connections: Int, seconds: Int) throws -> LoadResult {
        var arguments = ["-t", "2", "-c", "\(connections)", "-d", "\(seconds)s", "--latency", "--timeout", "10s", "-H", "Host: \(target.host)"]
        for header in target.headers { arguments += ["-H", header] }
        arguments.append("https://127.0.0.1:\(target.port)\(target.path)")
        return try parseWrk(try run("/usr/bin/wrk", arguments))
    }

    /// Runs a load generator to its end; its output, or an error that shows the command and what it said.
    static func run(_ executable: String, _ arguments: [String]) throws -> String {
        let run = try Command.run(executable, arguments)
        guard run.status == 0 else { throw BenchError("\(executable) \(arguments.joined(separator: " ")) failed: \(run.output)") }
        return run.output
    }

    static func parseWrk(_ output: String) throws -> LoadResult {
        var rps: Double?
        var p99: Double?
        var completed = 0
        var failures = 0
        for line in output.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            if line.hasPrefix("Requests/sec:"), fields.count >= 2 { rps = Double(fields[1]) }
            if line.hasPrefix("99%"), fields.count >= 2 { p99 = milliseconds(fields[1]) }
            if line.contains("requests in"), let first = fields.first { completed = Int(first) ?? 0 }
            if line.hasPrefix("Non-2xx or 3xx responses:"), let last = fields.last { failures += Int(last) ?? 0 }
            if line.hasPrefix("Socket errors:") {
                // "Socket errors: connect 0, read 0, write 0, timeout 0"
                failures += fields.compactMap { Int($0.trimmingCharacters(in: CharacterSet(charactersIn: ","))) }.reduce(0, +)
            }
        }
        guard let rps else { throw BenchError("wrk printed no Requests/sec line:\n\(output)") }
        return LoadResult(requestsPerSecond: rps, p99Milliseconds: p99, failures: failures, completed: completed)
    }

    /// "12.34ms", "1.20s", "950.00us" → milliseconds.
    static func milliseconds(_ text: String) -> Double? {
        for (suffix, factor) in [("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("m", 60_000.0)] where text.hasSuffix(suffix) {
            return Double(text.dropLast(suffix.count)).map { $0 * factor }
        }
        return nil
    }

    /// h2load with `clients` connections and `streams` concurrent streams each, for `seconds` after a second
    /// of warm-up.
    static func h2load(_ target: Target, clients: Int, streams: Int, seconds: Int) throws -> LoadResult {
        var arguments = [
            "-c", "\(clients)", "-m", "\(streams)", "-t", "1", "-D", "\(seconds)", "--warm-up-time", "1",
            "--connect-to", "127.0.0.1:\(target.port)",
        ]
        for header in target.headers { arguments += ["-H", header] }
        arguments.append("https://\(target.host):\(target.port)\(target.path)")
        return try parseH2load(try run("/usr/bin/h2load", arguments))
    }

    static func parseH2load(_ output: String) throws -> LoadResult {
        var rps: Double?
        var completed = 0
        var failures = 0
        for line in output.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
            // "finished in 10.00s, 3300.10 req/s, 4.02MB/s"
            if line.hasPrefix("finished in"), let index = fields.firstIndex(of: "req/s"), index > 0 { rps = Double(fields[index - 1]) }
            // "requests: 33001 total, 33001 started, 33001 done, 33001 succeeded, 0 failed, 0 errored, 0 timeout"
            if line.hasPrefix("requests:") {
                for (index, field) in fields.enumerated() where index > 0 {
                    if field == "succeeded" { completed = Int(fields[index - 1]) ?? 0 }
                    if ["failed", "errored", "timeout"].contains(field) { failures += Int(fields[index - 1]) ?? 0 }
                }
            }
            // "status codes: 33001 2xx, 0 3xx, 0 4xx, 0 5xx"
            if line.hasPrefix("status codes:") {
                for (index, field) in fields.enumerated() where index > 0 && (field == "4xx" || field == "5xx") {
                    failures += Int(fields[index - 1]) ?? 0
                }
            }
        }
        guard let rps else { throw BenchError("h2load printed no req/s:\n\(output)") }
        return LoadResult(requestsPerSecond: rps, p99Milliseconds: nil, failures: failures, completed: completed)
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
