import Foundation
import SallyportTesting
import Testing

extension EndToEnd {
    /// What an operations team runs, watches and debugs with.
    @Suite("Operations")
    struct OperationsTests {
        @Test("--log-format json writes one JSON object per line; text and JSON carry millisecond UTC timestamps; under journald, text lines carry the syslog priority instead")
        func logFormats() async throws {
            let deployment = try Deployment(hosts: ["app"])
            try await deployment.startRelay(logFormat: "json")
            let jsonLines = (deployment.relay?.log() ?? "").split(separator: "\n")
            await deployment.stopRelay()
            let objects = jsonLines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: String] }
            #expect(!objects.isEmpty && objects.count == jsonLines.count, "every line is a JSON object:\n\(jsonLines.joined(separator: "\n"))")
            let listening = try #require(objects.first { $0["msg"] == "relay listening" })
            #expect(listening["level"] == "info" && listening["logger"] == "sallyport.relay" && listening["public"] != nil, "\(listening)")
            let timestamp = try #require(listening["ts"])
            #expect(timestamp.wholeMatch(of: #/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/#) != nil, "\(timestamp)")

            try await deployment.startRelay()
            let textLine = try #require((deployment.relay?.log() ?? "").split(separator: "\n").first { $0.contains("relay listening") })
            await deployment.stopRelay()
            #expect(textLine.prefixMatch(of: #/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info sallyport\.relay: /#) != nil, "\(textLine)")

            // journald: standard error is the stream JOURNAL_STREAM names (its device and inode).
            let journalFile = deployment.directory.file("journal.log")
            try #require(FileManager.default.createFile(atPath: journalFile, contents: nil))
            let attributes = try FileManager.default.attributesOfItem(atPath: journalFile)
            let device = try #require(attributes[.systemNumber] as? Int)
            let inode = try #require(attributes[.systemFileNumber] as? Int)
            let relay = try ChildProcess.launch(
                deployment.binary, ["relay", "--config", deployment.directory.file("relay.yaml")],
                environment: ["JOURNAL_STREAM": "\(device):\(inode)"], logFile: journalFile
            )
            try await relay.waitForLog(containing: "relay listening", timeout: .seconds(30))
            relay.signal(SIGTERM)
            _ = await relay.waitForExit(timeout: .seconds(30))
            let journalLine = try #require(relay.log().split(separator: "\n").first { $0.contains("relay listening") })
            #expect(journalLine.hasPrefix("<6>info sallyport.relay: "), "\(journalLine)")
            await deployment.shutdown()
        }
    }
}
