import Foundation
import Synchronization
import Logging
import SallyportConfig
import SallyportTunnel
import SallyportWire
import Testing

@testable import SallyportRelay

/// The relay's side of configuration sync: versions per app, and updates that never miss a change.
@Suite struct ConfigSyncTests {
    final class AppsDirectory {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("catalog-\(UUID())").path
        init() throws { try FileManager.default.createDirectory(atPath: self.path, withIntermediateDirectories: true) }
        deinit { try? FileManager.default.removeItem(atPath: self.path) }

        func write(_ name: String, group: String = "default", backend: String = "http://10.0.0.1/", extra: String = "") throws {
            try """
                name: \(name)
                externalURL: https://\(name).example.com/
                internalURL: \(backend)
                connectorGroup: \(group)
                preAuthentication: passthrough
                sso:
                  handler: from-a-plugin
                  mode: "1"
                \(extra)
                """.write(toFile: self.path + "/\(name).yaml", atomically: true, encoding: .utf8)
        }
    }

    /// Before, an edit that a connector cannot see (a comment, lines moving) made the app "new" and its
    /// requests got 503 until a connector acknowledged.
    @Test func editsAConnectorCannotSeeKeepTheAppsVersion() throws {
        let apps = try AppsDirectory()
        let catalog = AppCatalog(directory: apps.path, logger: Logger(label: "test"))
        try apps.write("wiki")
        try apps.write("hr")
        #expect(catalog.reload())
        #expect(catalog.snapshot.appVersions["wiki"] == .init(changed: 1, introduced: 1))

        // A comment and a blank line above the sso settings: the file changed, the app as connectors see it did not.
        try """
            # moved down
            name: wiki
            externalURL: https://wiki.example.com/
            internalURL: http://10.0.0.1/
            connectorGroup: default
            preAuthentication: passthrough
            sso:

              handler: from-a-plugin
              mode: "1"
            """.write(toFile: apps.path + "/wiki.yaml", atomically: true, encoding: .utf8)
        #expect(catalog.reload())
        #expect(catalog.snapshot.generation == 2)
        #expect(catalog.snapshot.appVersions["wiki"] == .init(changed: 1, introduced: 1))
        // The new lines still reach connectors, for their error messages.
        #expect(catalog.snapshot.appSet(group: "default").apps.first { $0.name == "wiki" }?.source.positions["sso.handler"]?.line == 9)

        // A new backend is a change; the app has still been there since generation 1.
        try apps.write("wiki", backend: "http://10.0.0.2/")
        #expect(catalog.reload())
        #expect(catalog.snapshot.appVersions["wiki"] == .init(changed: 3, introduced: 1))
        #expect(catalog.snapshot.appVersions["hr"] == .init(changed: 1, introduced: 1))

        // Moving to another group: that group's connectors never had it.
        try apps.write("wiki", group: "berlin", backend: "http://10.0.0.2/")
        #expect(catalog.reload())
        #expect(catalog.snapshot.appVersions["wiki"] == .init(changed: 4, introduced: 4))
        #expect(catalog.snapshot.appSet(group: "berlin").apps.map(\.name) == ["wiki"])
        #expect(catalog.snapshot.appSet(group: "default").apps.map(\.name) == ["hr"])
    }

    /// Before, the tunnel listener sent the current configuration and only then subscribed to changes, so a
    /// reload in between reached the connector only at its next refresh (2 minutes).
    @Test func updatesStartWithTheCurrentSnapshotAndMissNoChange() async throws {
        let apps = try AppsDirectory()
        let catalog = AppCatalog(directory: apps.path, logger: Logger(label: "test"))
        try apps.write("wiki")
        catalog.reload()
        let updates = catalog.updates()
        // A change right after subscribing, before anything was read or sent.
        try apps.write("hr")
        #expect(catalog.reload())
        var iterator = updates.makeAsyncIterator()
        let first = try #require(await iterator.next())
        // Updates keep only the newest snapshot: whatever came first, the newest must arrive.
        if first.generation == 1 {
            let second = try #require(await iterator.next())
            #expect(second.generation == 2)
        } else {
            #expect(first.generation == 2)
        }
        #expect(catalog.snapshot.generation == 2)
    }

    @Test func aRelayProcessHasItsOwnEpoch() throws {
        let one = AppCatalog(directory: "/nonexistent", logger: Logger(label: "test"))
        let two = AppCatalog(directory: "/nonexistent", logger: Logger(label: "test"))
        #expect(one.snapshot.version.epoch != two.snapshot.version.epoch)
        #expect(one.snapshot.version.generation == 0)
        // A connector holding generation 9 of another relay process takes generation 1 of this one.
        #expect(ConfigVersion(epoch: two.snapshot.version.epoch, generation: 9).isSuperseded(by: ConfigVersion(epoch: one.snapshot.version.epoch, generation: 1)))
        #expect(!ConfigVersion(epoch: 5, generation: 9).isSuperseded(by: ConfigVersion(epoch: 5, generation: 8)))
        #expect(ConfigVersion(epoch: 5, generation: 9).isSuperseded(by: ConfigVersion(epoch: 5, generation: 9)))
    }

    /// Before, a broken file was logged again on every reload (every 2 s), and "apps loaded" listed every app
    /// without saying which changed.
    @Test func reloadsSayWhatChangedAndABrokenFileOnce() throws {
        let apps = try AppsDirectory()
        let records = RecordingLogHandler.Records()
        let catalog = AppCatalog(directory: apps.path, logger: Logger(label: "test") { _ in RecordingLogHandler(records: records) })
        try apps.write("wiki")
        try apps.write("hr")
        catalog.reload()
        #expect(records.last?.message == "apps loaded" && records.last?.metadata["added"] == "hr,wiki")

        try apps.write("wiki", backend: "http://10.0.0.2/")
        try FileManager.default.removeItem(atPath: apps.path + "/hr.yaml")
        try apps.write("crm")
        catalog.reload()
        let loaded = try #require(records.last)
        #expect(loaded.metadata["added"] == "crm" && loaded.metadata["changed"] == "wiki" && loaded.metadata["removed"] == "hr", "\(loaded.metadata)")

        try "name: crm\nexternalURL: [\n".write(toFile: apps.path + "/crm.yaml", atomically: true, encoding: .utf8)
        for _ in 0..<3 { catalog.reload() }
        #expect(records.all.filter { $0.message.hasPrefix("app configuration rejected") }.count == 1, "one report for one broken edit")
        // Another broken edit is news again.
        try "name: crm\ncolour: blue\n".write(toFile: apps.path + "/crm.yaml", atomically: true, encoding: .utf8)
        catalog.reload()
        #expect(records.all.filter { $0.message.hasPrefix("app configuration rejected") }.count >= 2)
    }
}

/// Keeps what is logged, for tests that check the log.
struct RecordingLogHandler: LogHandler {
    struct Record: Sendable {
        var message: String
        var metadata: [String: String]
    }

    final class Records: Sendable {
        private let records = Mutex<[Record]>([])
        func append(_ record: Record) { self.records.withLock { $0.append(record) } }
        var all: [Record] { self.records.withLock { $0 } }
        var last: Record? { self.all.last }
    }

    let records: Records
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = self.metadata.merging(event.metadata ?? [:]) { _, new in new }
        self.records.append(Record(message: "\(event.message)", metadata: merged.mapValues { "\($0)" }))
    }
}
