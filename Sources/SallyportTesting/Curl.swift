import Foundation

/// curl from Debian's packages, run as a subprocess.
///
/// Status and HTTP version come from curl's `--write-out`, headers from its `--dump-header` file; nothing
/// parses the body.
public struct Curl {
    /// What one curl run produced.
    public struct Result: Sendable {
        /// The final response's status code; 0 if no response arrived (see `exitCode` and `stderr`).
        public var status: Int
        /// The final response's header fields in order, names as sent (lowercase over HTTP/2).
        public var headers: [(String, String)]
        /// The response body decoded as UTF-8; empty when `outputFile` was given.
        public var body: String
        /// The response's HTTP version as curl reports it: "1.1", "2", or "0" if none.
        public var httpVersion: String
        /// curl's exit code: 0 on success, 28 on timeout, 35/60 on TLS failures, and so on.
        public var exitCode: Int32
        /// curl's error output.
        public var stderr: String

        /// The first header named `name` (case-insensitive).
        public func header(_ name: String) -> String? {
            headers.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1
        }

        /// Every value of headers named `name` (case-insensitive), in order.
        public func headers(named name: String) -> [String] {
            headers.filter { $0.0.caseInsensitiveCompare(name) == .orderedSame }.map(\.1)
        }
    }

    /// Runs curl against `url` and returns the response; throws only if curl cannot be run at all.
    ///
    /// - Parameters:
    ///   - url: for example `https://app.localhost:PORT/path`; curl resolves `*.localhost` to loopback itself.
    ///   - caFile: the CA to trust for `https://`; `nil` uses the system store.
    ///   - http2: offer HTTP/2 (`--http2`); otherwise `--http1.1`.
    ///   - method: overrides the request method (`-X`).
    ///   - headers: raw `Name: value` request header lines.
    ///   - data: a request body sent as is (`--data-binary`; the method becomes POST unless `method` says otherwise).
    ///   - uploadFile: a file streamed as the body (`-T`; the method becomes PUT unless `method` says otherwise).
    ///   - outputFile: write the body there instead of into ``Result/body``.
    ///   - chunked: adds `Transfer-Encoding: chunked` for uploads.
    ///   - timeout: seconds for the whole transfer (`--max-time`).
    ///   - extraArguments: passed to curl before the URL.
    public static func run(
        _ url: String,
        caFile: String?,
        http2: Bool = false,
        method: String? = nil,
        headers: [String] = [],
        data: String? = nil,
        uploadFile: String? = nil,
        outputFile: String? = nil,
        chunked: Bool = false,
        timeout: Int = 60,
        extraArguments: [String] = []
    ) async throws -> Result {
        let scratch = try TestDirectory(prefix: "sallyport-curl")
        defer { scratch.remove() }
        let headerFile = scratch.file("headers")
        let bodyFile = outputFile ?? scratch.file("body")

        var arguments = [
            "--silent", "--show-error", "--globoff", "--noproxy", "*",
            "--max-time", String(timeout),
            "--dump-header", headerFile,
            "--output", bodyFile,
            "--write-out", "%{http_code} %{http_version}",
            http2 ? "--http2" : "--http1.1",
        ]
        if let caFile {
            arguments += ["--cacert", caFile]
        }
        if let method {
            arguments += ["--request", method]
        }
        for header in headers {
            arguments += ["--header", header]
        }
        if chunked {
            arguments += ["--header", "Transfer-Encoding: chunked"]
        }
        if let data {
            // Through a file: a string argument starting with "@" would be read as a file name by curl.
            let dataFile = try scratch.write("data", data)
            arguments += ["--data-binary", "@" + dataFile]
        }
        if let uploadFile {
            arguments += ["--upload-file", uploadFile]
        }
        arguments += extraArguments
        arguments.append(url)

        let stdoutFile = scratch.file("stdout")
        let stderrFile = scratch.file("stderr")
        let process = try ChildProcess.launch(
            "curl",
            arguments,
            environment: nil,
            stdout: stdoutFile,
            stderr: stderrFile,
            currentDirectory: nil
        )
        guard let exitCode = await process.waitForExit(timeout: .seconds(timeout + 30)) else {
            await process.terminate()
            throw HarnessError(.timedOut, "curl \(url) did not exit within \(timeout + 30)s despite --max-time \(timeout)")
        }

        let writeOut = read(stdoutFile).split(separator: " ")
        return Result(
            status: writeOut.first.flatMap { Int($0) } ?? 0,
            headers: parseHeaders(read(headerFile)),
            body: outputFile == nil ? read(bodyFile) : "",
            httpVersion: writeOut.count > 1 ? String(writeOut[1]) : "0",
            exitCode: exitCode,
            stderr: read(stderrFile)
        )
    }

    /// One request of a ``batch(_:caFile:parallel:timeout:)``.
    public struct BatchRequest: Sendable {
        public var url: String
        public var headers: [String]
        public init(url: String, headers: [String] = []) {
            self.url = url
            self.headers = headers
        }
    }

    /// Runs many GET requests in one curl process (`--parallel`; HTTP/2 streams multiplexed, or HTTP/1.1
    /// connections reused) and returns each response's status and body, in the order given. For load and
    /// interleaving tests.
    public static func batch(_ requests: [BatchRequest], caFile: String?, parallel: Int = 8, http2: Bool = true, timeout: Int = 300) async throws -> [(status: Int, body: String)] {
        try await batchWithErrors(requests, caFile: caFile, parallel: parallel, http2: http2, timeout: timeout).results
    }

    /// Like ``batch(_:caFile:parallel:timeout:)``, also returning what curl wrote to stderr (why a transfer failed).
    /// With `SALLYPORT_CURL_BATCH_VERBOSE=FILE` in the environment curl runs with `--verbose --trace-time` and
    /// its stderr is copied to FILE (last batch wins), for debugging lost transfers.
    public static func batchWithErrors(
        _ requests: [BatchRequest], caFile: String?, parallel: Int = 8, http2: Bool = true, timeout: Int = 300
    ) async throws -> (results: [(status: Int, body: String)], stderr: String) {
        let scratch = try TestDirectory(prefix: "sallyport-curl-batch")
        defer { scratch.remove() }
        func quoted(_ text: String) -> String { "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
        var config = ""
        var headerFiles: [String: String] = [:]
        for (index, request) in requests.enumerated() {
            if index > 0 { config += "next\n" }
            config += "url = \(quoted(request.url))\n"
            config += "output = \(quoted(scratch.file("body-\(index)")))\n"
            config += "write-out = \(quoted("\(index) %{http_code}\\n"))\n"
            config += "noproxy = \"*\"\n"
            // Per transfer: `next` resets options, and curl 7.88 mixing HTTP/1.1 and HTTP/2 transfers to one
            // host in a parallel batch delivers one connection's bytes to another transfer.
            config += http2 ? "http2\n" : "http1.1\n"
            if let caFile { config += "cacert = \(quoted(caFile))\n" }
            // Each distinct header set goes to a file the entries name: the config stays small.
            if !request.headers.isEmpty {
                let joined = request.headers.joined(separator: "\n")
                let file: String
                if let known = headerFiles[joined] {
                    file = known
                } else {
                    file = try scratch.write("headers-\(headerFiles.count)", joined + "\n")
                    headerFiles[joined] = file
                }
                config += "header = \(quoted("@" + file))\n"
            }
        }
        let configFile = try scratch.write("curl.conf", config)
        let stdoutFile = scratch.file("stdout")
        let process = try ChildProcess.launch(
            "curl", (ProcessInfo.processInfo.environment["SALLYPORT_CURL_BATCH_VERBOSE"] != nil ? ["--verbose", "--trace-time"] : []) + ["--silent", "--show-error", "--parallel", "--parallel-max", String(parallel), "--max-time", String(timeout), "--config", configFile],
            environment: nil, stdout: stdoutFile, stderr: scratch.file("stderr"), currentDirectory: nil
        )
        guard await process.waitForExit(timeout: .seconds(timeout + 30)) != nil else {
            await process.terminate()
            throw HarnessError(.timedOut, "curl batch of \(requests.count) did not finish within \(timeout + 30)s")
        }
        var statuses = [Int](repeating: 0, count: requests.count)
        for line in read(stdoutFile).split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let index = Int(parts[0]), let status = Int(parts[1]), statuses.indices.contains(index) { statuses[index] = status }
        }
        if let keep = ProcessInfo.processInfo.environment["SALLYPORT_CURL_BATCH_VERBOSE"] { try? FileManager.default.removeItem(atPath: keep); try? FileManager.default.copyItem(atPath: scratch.file("stderr"), toPath: keep) }
        return (statuses.enumerated().map { index, status in (status, read(scratch.file("body-\(index)"))) }, read(scratch.file("stderr")))
    }

    /// The fields of the last response head in a `--dump-header` file (skipping `100 Continue` and the like).
    static func parseHeaders(_ text: String) -> [(String, String)] {
        var blocks: [[Substring]] = []
        // "\r\n" is a single Character in Swift, so split on isNewline rather than on "\n".
        for line in text.split(whereSeparator: \.isNewline) {
            if line.hasPrefix("HTTP/") {
                blocks.append([])
            } else if !blocks.isEmpty {
                blocks[blocks.count - 1].append(line)
            }
        }
        return (blocks.last ?? []).compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            return (name, value)
        }
    }

    private static func read(_ path: String) -> String {
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }
}
