import Foundation
import SallyportTesting
import Testing

extension EndToEnd {
    /// The benchmark (scripts/bench.sh) is not a test, and nothing here is timed: this runs each of its cases for
    /// a second against the debug builds so that the benchmark itself keeps working as the product changes.
    @Suite("Benchmark smoke run")
    struct BenchSmokeTests {
        @Test("sallyport-bench --smoke measures every case, KCD included, and no request fails")
        func smoke() async throws {
            let work = try TestDirectory(prefix: "sallyport-bench-smoke")
            defer { work.remove() }
            let repository = PluginTests.repository
            let bench = try BuiltProduct.path("sallyport-bench")
            let process = try ChildProcess.launch(
                bench, ["--smoke", "--configuration", "debug", "--repository", repository], logFile: work.file("bench.log"), currentDirectory: repository
            )
            let status = await process.waitForExit(timeout: .seconds(900))
            let output = process.log()
            try #require(status == 0, "sallyport-bench exited \(status.map(String.init) ?? "by timeout"):\n\(output.suffix(4000))")
            for row in [
                "nginx reverse proxy, one hop", "nginx edge → mutual TLS → nginx → backend", "Sallyport passthrough",
                "Sallyport, JWT pre-authentication + header SSO", "Sallyport, trivial plugin handler in its host process",
                "Sallyport, trivial plugin handler in process", "Apache, Sallyport KCD, a ticket per request (warm cache)",
                "Apache, Sallyport KCD, connection-bound path (warm cache)", "| Sallyport passthrough | ", "1000 requests open",
            ] {
                #expect(output.contains(row), "no line for \(row):\n\(output.suffix(4000))")
            }
            #expect(!output.contains("failed)"), "requests failed under load:\n\(output.suffix(4000))")
            // One S4U2Self and one S4U2Proxy for 100 concurrent first requests of one user.
            #expect(output.contains("100 concurrent first requests of one user made 1 S4U2Self and 1 S4U2Proxy exchanges"), "\(output.suffix(2000))")
        }
    }
}
