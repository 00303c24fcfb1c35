import Foundation
import SallyportTesting
import Synchronization
import Testing


extension EndToEnd {
    /// 1 GiB each way through relay, tunnel and connector, with both processes' resident memory watched:
    /// bodies stream with back-pressure and are never held whole.
    @Suite("Large transfers")
    struct LargeTransferTests {
        static let size = 1 << 30
        static let allowedGrowth = 64 * 1024 * 1024

        /// Samples the resident memory of some processes until stopped; keeps the maximum of each, how many
        /// samples were taken, and any sampling that failed (a watch that saw nothing must not pass).
        final class MemoryWatch: Sendable {
            struct Result {
                var maxima: [Int32: Int] = [:]
                var samples: [Int32: Int] = [:]
                var failures: [String] = []
            }

            let result = Mutex(Result())
            let task: Mutex<Task<Void, Never>?> = Mutex(nil)

            init(_ processes: [ChildProcess]) {
                let watched = processes
                self.task.withLock {
                    $0 = Task { [weak self] in
                        while !Task.isCancelled, let self {
                            for process in watched {
                                do {
                                    let rss = try process.residentMemory()
                                    self.result.withLock {
                                        $0.maxima[process.pid] = max($0.maxima[process.pid] ?? 0, rss)
                                        $0.samples[process.pid, default: 0] += 1
                                    }
                                } catch {
                                    self.result.withLock { $0.failures.append("\(process.pid): \(error)") }
                                }
                            }
                            try? await Task.sleep(for: .milliseconds(100))
                        }
                    }
                }
            }

            func stop() -> Result {
                self.task.withLock { $0?.cancel() }
                return self.result.withLock { $0 }
            }
        }

        static func sameContents(_ a: String, _ b: String, in directory: TestDirectory) async throws -> Bool {
            let cmp = try ChildProcess.launch("/usr/bin/cmp", [a, b], logFile: directory.file("cmp.log"))
            return await cmp.waitForExit(timeout: .seconds(120)) == 0
        }

        @Test("1 GiB download and upload stream through with resident memory growth under 64 MiB")
        func gigabyteEachWay() async throws {
            let deployment = try Deployment(hosts: ["big"])
            let nginx = try await Nginx.start(directory: deployment.directory)
            try deployment.writeApp(name: "big", internalURL: nginx.baseURL + "/")
            try await deployment.startRelay()
            let connector = try await deployment.startConnector()
            let relay = try #require(deployment.relay)

            let original = nginx.filesDirectory + "/giga.bin"
            let generate = try ChildProcess.launch("/usr/bin/head", ["-c", "\(Self.size)", "/dev/urandom"], logFile: original)
            #expect(await generate.waitForExit(timeout: .seconds(120)) == 0)
            defer { try? FileManager.default.removeItem(atPath: original) }

            // Warm up both processes (TLS, pools, first buffers) before taking the baseline.
            _ = FileManager.default.createFile(atPath: nginx.filesDirectory + "/small.bin", contents: Data(repeating: 1, count: 256 * 1024))
            for _ in 0..<3 {
                #expect(try await Curl.run(deployment.url("big", "/files/small.bin"), caFile: deployment.caFile).status == 200)
            }
            let baseline = [relay.pid: try relay.residentMemory(), connector.pid: try connector.residentMemory()]
            let watch = MemoryWatch([relay, connector])

            let downloaded = deployment.directory.file("download.bin")
            let download = try await Curl.run(deployment.url("big", "/files/giga.bin"), caFile: deployment.caFile, outputFile: downloaded, timeout: 900)
            #expect(download.status == 200, "\(download.stderr)")
            #expect(try await Self.sameContents(original, downloaded, in: deployment.directory), "download differs from the original")
            try? FileManager.default.removeItem(atPath: downloaded)

            let upload = try await Curl.run(
                deployment.url("big", "/uploads/giga.bin"), caFile: deployment.caFile, http2: true, method: "PUT", uploadFile: original, timeout: 900
            )
            #expect(upload.status == 201, "\(upload.stderr)")
            let uploaded = nginx.uploadsDirectory + "/giga.bin"
            #expect(try await Self.sameContents(original, uploaded, in: deployment.directory), "upload differs from the original")
            try? FileManager.default.removeItem(atPath: uploaded)

            let watched = watch.stop()
            #expect(watched.failures.isEmpty, "resident memory could not be read: \(watched.failures.prefix(3))")
            for (name, process) in [("relay", relay), ("connector", connector)] {
                // Two transfers of 1 GiB take many seconds: a watch with few samples saw nothing.
                #expect((watched.samples[process.pid] ?? 0) >= 20, "\(name): only \(watched.samples[process.pid] ?? 0) memory samples")
                let peak = try #require(watched.maxima[process.pid], "no memory sample of the \(name)")
                let growth = peak - baseline[process.pid]!
                print("large transfers: \(name) resident memory grew by \(growth / 1024 / 1024) MiB (limit \(Self.allowedGrowth / 1024 / 1024) MiB)")
                #expect(growth < Self.allowedGrowth, "\(name) grew by \(growth / 1024 / 1024) MiB during 1 GiB transfers")
            }
            await nginx.stop()
            await deployment.shutdown()
        }
    }
}
