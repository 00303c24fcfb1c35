import Foundation
import SallyportTesting

/// What the machine is, for the report: results mean nothing without it.
enum Machine {
    static func describe() -> String {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }.map { $0.split(separator: ":", maxSplits: 1).last ?? "" }
            .map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown CPU"
        let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        let memory = meminfo.split(separator: "\n").first { $0.hasPrefix("MemTotal") }.flatMap { Int($0.split(separator: " ")[1]) }.map { $0 / 1024 / 1024 } ?? 0
        func version(_ executable: String, _ arguments: [String]) -> String {
            let output = (try? Command.run(executable, arguments))?.output ?? "missing"
            return output.split(separator: "\n").first.map(String.init)?.trimmingCharacters(in: .whitespaces) ?? "unknown"
        }
        let kernel = version("/usr/bin/uname", ["-r"])
        return """
            \(ProcessInfo.processInfo.activeProcessorCount) × \(model), \(memory) GiB, Linux \(kernel); \
            \(version("/usr/sbin/nginx", ["-v"])), \(version("/usr/bin/wrk", ["-v"]).split(separator: " ").prefix(2).joined(separator: " ")), \
            \(version("/usr/bin/h2load", ["--version"])), \(version("/usr/bin/env", ["swift", "--version"]).replacingOccurrences(of: " (swift-", with: " (").prefix(60))
            """
    }
}

/// The results of one run, as Markdown.
struct Report {
    struct Row {
        var name: String
        var h1Small: LoadResult?
        var h2Small: LoadResult?
        var h1Large: LoadResult?
        var h2Large: LoadResult?
    }

    var machine: String
    var seconds: Int
    /// The build configuration of what was measured (release, unless the smoke test runs debug builds).
    var configuration: String
    var rows: [Row] = []
    var kerberosRows: [Row] = []
    var transfers: [Transfers.Result] = []
    var memory: Transfers.Memory?
    var kcd: KCDLatency.Result?
    var notes: [String] = []

    /// The row every other is compared with: nginx doing the same two hops as Sallyport.
    static let twoHops = "nginx edge → mutual TLS → nginx → backend"

    static let begin = "<!-- bench:begin (written by scripts/bench.sh; edit outside these markers) -->"
    static let end = "<!-- bench:end -->"

    func markdown() -> String {
        let date = ISO8601DateFormatter().string(from: Date()).prefix(10)
        var lines = [
            Self.begin,
            "### Results of \(date)",
            "",
            "Machine: \(self.machine).",
            "",
            "\(self.configuration.capitalized) builds, loopback, TLS at the public edge, keep-alive; the backend is nginx serving static files; "
                + "wrk `-t2 -c64` (1 KiB) and `-c16` (1 MiB) for HTTP/1.1, h2load `-c8 -m16` (1 KiB) and `-c4 -m4` (1 MiB) for HTTP/2, "
                + "\(self.seconds) s each after a warm-up. Sallyport as shipped: access logs on, metrics on, log level info. "
                + "Ratios are to the nginx two-hop line (the same hops Sallyport makes).",
            "",
            "| setup | HTTP/1.1 rps (1 KiB) | P99 | ratio | HTTP/2 rps (1 KiB) | ratio | HTTP/1.1 rps (1 MiB) | HTTP/2 rps (1 MiB) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        let reference = self.rows.first { $0.name == Self.twoHops }
        for row in self.rows { lines.append(Self.line(row, reference: reference)) }
        if !self.kerberosRows.isEmpty {
            lines += [
                "",
                "KCD against the Kerberos test bed's Apache (mod_auth_gssapi checks every ticket; all with JWT pre-authentication; ratios to passthrough to the same Apache):",
                "",
                "| setup | HTTP/1.1 rps (1 KiB) | P99 | ratio | HTTP/2 rps (1 KiB) | ratio |",
                "|---|---:|---:|---:|---:|---:|",
            ]
            for row in self.kerberosRows { lines.append(Self.line(row, reference: self.kerberosRows.first, large: false)) }
        }
        if !self.transfers.isEmpty {
            lines += ["", "Large transfer each way (curl, HTTP/1.1):", "", "| setup | download MB/s | upload MB/s | resident memory growth |", "|---|---:|---:|---|"]
            for transfer in self.transfers {
                let growth = transfer.growth.isEmpty ? "–" : transfer.growth.map { "\($0.process) +\(Self.mebibytes($0.bytes))" }.joined(separator: ", ")
                lines.append("| \(transfer.name) | \(Self.number(transfer.download)) | \(Self.number(transfer.upload)) | \(growth) |")
            }
        }
        if let memory {
            lines += [
                "", "Resident memory:", "",
                "| | relay | connector |", "|---|---:|---:|",
                "| idle, after start | \(Self.mebibytes(memory.relayIdle)) | \(Self.mebibytes(memory.connectorIdle)) |",
                "| \(memory.openStreams) requests open (10 HTTP/2 connections × 100 streams) | \(Self.mebibytes(memory.relayWithStreams)) | \(Self.mebibytes(memory.connectorWithStreams)) |",
            ]
        }
        if let kcd {
            lines += [
                "",
                "KCD with a cold ticket cache (median of 5): first request \(Self.number(kcd.cold)) ms, the next one \(Self.number(kcd.warm)) ms. "
                    + "\(kcd.concurrentUsers) concurrent first requests of one user made \(kcd.s4u2self) S4U2Self and \(kcd.s4u2proxy) S4U2Proxy exchanges.",
            ]
        }
        for note in self.notes { lines += ["", note] }
        lines.append(Self.end)
        return lines.joined(separator: "\n")
    }

    static func line(_ row: Row, reference: Row?, large: Bool = true) -> String {
        func rps(_ result: LoadResult?) -> String {
            guard let result else { return "–" }
            return Self.number(result.requestsPerSecond) + (result.failures > 0 ? " (\(result.failures) failed)" : "")
        }
        func ratio(_ result: LoadResult?, _ base: LoadResult?) -> String {
            guard let result, let base, base.requestsPerSecond > 0 else { return "–" }
            return String(format: "%.2f×", result.requestsPerSecond / base.requestsPerSecond)
        }
        let p99 = row.h1Small?.p99Milliseconds.map { String(format: "%.1f ms", $0) } ?? "–"
        var cells = [row.name, rps(row.h1Small), p99, ratio(row.h1Small, reference?.h1Small), rps(row.h2Small), ratio(row.h2Small, reference?.h2Small)]
        if large { cells += [rps(row.h1Large), rps(row.h2Large)] }
        return "| " + cells.joined(separator: " | ") + " |"
    }

    /// 27300.4 → "27,300"; 37.25 → "37.3".
    static func number(_ value: Double) -> String {
        guard value >= 100 else { return String(format: "%.1f", value) }
        var digits = String(Int(value.rounded()))
        var index = digits.endIndex
        while digits.distance(from: digits.startIndex, to: index) > 3 {
            index = digits.index(index, offsetBy: -3)
            digits.insert(",", at: index)
        }
        return digits
    }

    static func mebibytes(_ bytes: Int) -> String { String(format: "%.0f MiB", Double(bytes) / 1_048_576) }

    /// Replaces what is between the markers in `file` (or appends the block if the file has none).
    static func write(_ block: String, into file: String) throws {
        var text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? "# Performance\n"
        if let start = text.range(of: Self.begin), let stop = text.range(of: Self.end, range: start.upperBound..<text.endIndex) {
            text.replaceSubrange(start.lowerBound..<stop.upperBound, with: block)
        } else {
            text += "\n" + block + "\n"
        }
        try text.write(toFile: file, atomically: true, encoding: .utf8)
    }
}
