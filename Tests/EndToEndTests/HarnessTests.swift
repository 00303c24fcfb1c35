import Foundation
import SallyportTesting
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Checks the harness itself against real nginx and curl, so a failing end-to-end test points at Sallyport.
@Suite("Harness")
struct HarnessTests {
    @Test("nginx serves the index page")
    func index() async throws {
        let directory = try TestDirectory(prefix: "harness-index")
        let nginx = try await Nginx.start(directory: directory)

        let result = try await Curl.run(nginx.baseURL + "/", caFile: nil)
        #expect(result.exitCode == 0, "\(result.stderr)")
        #expect(result.status == 200)
        #expect(result.httpVersion == "1.1")
        #expect(result.body.contains("nginx backend"))
        #expect(result.header("content-type") == "text/html")
        await nginx.stop()
    }

    @Test("PUT /uploads stores the body and GET reads it back")
    func upload() async throws {
        let directory = try TestDirectory(prefix: "harness-upload")
        let nginx = try await Nginx.start(directory: directory)

        let put = try await Curl.run(nginx.baseURL + "/uploads/x", caFile: nil, method: "PUT", data: "@not a file name")
        #expect(put.status == 201, "\(put.stderr) \(put.body)")
        let stored = try String(contentsOfFile: nginx.uploadsDirectory + "/x", encoding: .utf8)
        #expect(stored == "@not a file name")

        let get = try await Curl.run(nginx.baseURL + "/uploads/x", caFile: nil)
        #expect(get.status == 200)
        #expect(get.body == "@not a file name")

        // A streamed, chunked upload of a file into a nested path.
        let source = try directory.write("source.txt", String(repeating: "0123456789", count: 100_000))
        let streamed = try await Curl.run(
            nginx.baseURL + "/uploads/nested/big.txt",
            caFile: nil,
            uploadFile: source,
            chunked: true
        )
        #expect(streamed.status == 201, "\(streamed.stderr)")
        let sizes = try [source, nginx.uploadsDirectory + "/nested/big.txt"].map {
            try FileManager.default.attributesOfItem(atPath: $0)[.size] as? Int
        }
        #expect(sizes[0] == 1_000_000 && sizes[1] == 1_000_000)
        await nginx.stop()
    }

    @Test("POST /echo returns the body, small and large")
    func echo() async throws {
        let directory = try TestDirectory(prefix: "harness-echo")
        let nginx = try await Nginx.start(directory: directory)

        let small = try await Curl.run(nginx.baseURL + "/echo", caFile: nil, data: "ping pong")
        #expect(small.status == 200)
        #expect(small.body == "ping pong")

        // Larger than client_body_buffer_size, so nginx buffers it in a temp file.
        let payload = String(repeating: "abcdefghijklmnopqrstuvwxyz\n", count: 200_000)
        let large = try await Curl.run(nginx.baseURL + "/echo", caFile: nil, data: payload)
        #expect(large.status == 200)
        #expect(large.body.count == payload.count)
        #expect(large.body == payload)

        let chunked = try await Curl.run(nginx.baseURL + "/echo", caFile: nil, data: "in chunks", chunked: true)
        #expect(chunked.status == 200)
        #expect(chunked.body == "in chunks")
        await nginx.stop()
    }

    @Test("GET /headers shows the request headers that reached nginx")
    func headers() async throws {
        let directory = try TestDirectory(prefix: "harness-headers")
        let nginx = try await Nginx.start(directory: directory)

        let result = try await Curl.run(
            nginx.baseURL + "/headers",
            caFile: nil,
            headers: ["X-Sallyport-Test: forty two", "X-Forwarded-For: 192.0.2.7"]
        )
        #expect(result.status == 200)
        let lines = result.body.split(separator: "\r\n").map(String.init)
        #expect(lines.first == "GET /headers HTTP/1.1")
        #expect(lines.contains("X-Sallyport-Test: forty two"))
        #expect(lines.contains("Host: 127.0.0.1:\(nginx.port)"))

        try await eventually { nginx.accessLog().contains("GET /headers 200") }
        #expect(nginx.accessLog().contains("xff=\"192.0.2.7\""))
        #expect(nginx.accessLog().contains("host=\"127.0.0.1\""))
        await nginx.stop()
    }

    @Test("status routes, ranges and the access log")
    func statusAndFiles() async throws {
        let directory = try TestDirectory(prefix: "harness-status")
        let nginx = try await Nginx.start(directory: directory)
        try Data("0123456789".utf8).write(to: URL(fileURLWithPath: nginx.filesDirectory + "/digits.txt"))

        for code in [404, 500, 204] {
            let result = try await Curl.run(nginx.baseURL + "/status/\(code)", caFile: nil)
            #expect(result.status == code)
        }
        let range = try await Curl.run(nginx.baseURL + "/files/digits.txt", caFile: nil, headers: ["Range: bytes=2-4"])
        #expect(range.status == 206)
        #expect(range.body == "234")
        let slow = try await Curl.run(nginx.baseURL + "/slow/digits.txt", caFile: nil)
        #expect(slow.body == "0123456789")

        let output = directory.file("download.txt")
        let download = try await Curl.run(nginx.baseURL + "/files/digits.txt", caFile: nil, outputFile: output)
        #expect(download.status == 200)
        #expect(download.body.isEmpty)
        #expect(try String(contentsOfFile: output, encoding: .utf8) == "0123456789")

        try await eventually { nginx.requestCount() == 6 }
        #expect(nginx.accessLog().contains("GET /status/404 404"))
        await nginx.stop()

        let afterStop = try await Curl.run(nginx.baseURL + "/", caFile: nil, timeout: 5)
        #expect(afterStop.status == 0)
        #expect(afterStop.exitCode == 7)  // couldn't connect
    }

    @Test("ChildProcess captures output, reports exit status and terminates")
    func childProcess() async throws {
        let directory = try TestDirectory(prefix: "harness-child")
        let log = directory.file("child.log")
        let child = try ChildProcess.launch(
            "/bin/sh",
            ["-c", "echo started in $(pwd) with $SALLYPORT_TEST_VALUE; echo oops >&2; exec sleep 60"],
            environment: ["SALLYPORT_TEST_VALUE": "value-1"],
            logFile: log,
            currentDirectory: directory.path
        )
        try await child.waitForLog(containing: "oops", timeout: .seconds(10))
        #expect(child.log().contains("started in \(directory.path) with value-1"))
        #expect(child.isRunning)
        #expect(try child.residentMemory() > 0)
        await child.terminate()
        #expect(!child.isRunning)
        #expect(await child.waitForExit(timeout: .seconds(1)) == 128 + SIGTERM)

        let quick = try ChildProcess.launch("sh", ["-c", "exit 3"], logFile: directory.file("quick.log"))
        #expect(await quick.waitForExit(timeout: .seconds(10)) == 3)

        let silent = try ChildProcess.launch("sh", ["-c", "echo nothing useful"], logFile: directory.file("silent.log"))
        let error = await #expect(throws: HarnessError.self) {
            try await silent.waitForLog(containing: "ready", timeout: .seconds(10))
        }
        #expect(error?.code == .exitedEarly)
        #expect(error?.message.contains("nothing useful") == true)

        #expect(throws: HarnessError.self) {
            try ChildProcess.launch("/nonexistent/binary", [], logFile: directory.file("missing.log"))
        }
    }

    @Test("FreePort, Wait and TestDirectory")
    func smallPieces() async throws {
        let ports = try (0..<20).map { _ in try FreePort.next() }
        #expect(Set(ports).count == ports.count)
        // Below the ephemeral range: no client connection (of PostgreSQL's clients, HAProxy's checks, curl) can
        // take a port between FreePort's probe and the server's bind. A PKI test's openssl s_server once found
        // its port taken while the state tests' database clients were busy.
        if let range = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8),
            let low = range.split(whereSeparator: \.isWhitespace).first.flatMap({ Int($0) })
        {
            #expect(ports.allSatisfy { $0 >= 10_000 && $0 < low }, "\(ports) against an ephemeral range from \(low)")
        }

        let error = await #expect(throws: HarnessError.self) {
            try await Wait.forPort(ports[0], timeout: .milliseconds(300))
        }
        #expect(error?.code == .timedOut)

        let directory = try TestDirectory(prefix: "harness-dir")
        let written = try directory.write("a/b.txt", "hello")
        #expect(try String(contentsOfFile: written, encoding: .utf8) == "hello")
        directory.remove()
        #expect(!FileManager.default.fileExists(atPath: directory.path) || ProcessInfo.processInfo.environment["SALLYPORT_KEEP_TEST_DIRS"] == "1")

        #expect(throws: HarnessError.self) { try BuiltProduct.path("no-such-product-anywhere") }
    }
}

/// Polls `condition` until it holds; nginx writes its access log after the response is sent.
func eventually(timeout: Duration = .seconds(5), _ condition: () -> Bool) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while !condition() {
        guard clock.now < deadline else {
            Issue.record("condition did not hold within \(timeout)")
            return
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}
