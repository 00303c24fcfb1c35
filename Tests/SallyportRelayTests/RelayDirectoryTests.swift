import Foundation
import Logging
@testable import SallyportRelay
import SallyportState
import SallyportWire
import Testing

/// The relay list against a real (SQLite) store: who is listed, when connectors get a list, and leaving.
@Suite("Relay directory")
struct RelayDirectoryTests {
    static let own = ControlMessage.RelayEndpoint(address: "relay-a.example.com:8443", serverName: "relay-a.example.com")

    static func withStore(_ body: (SQLiteStore) async throws -> Void) async throws {
        let directory = NSTemporaryDirectory() + "sallyport-relays-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try await SQLiteStore.open(path: directory + "/relay.db", logger: Logger(label: "test"))
        do {
            try await body(store)
        } catch {
            await store.close()
            throw error
        }
        await store.close()
    }

    static func other(_ address: String, seen: Date, digest: String = "same") -> RelayRecord {
        RelayRecord(address: address, serverName: "x", software: "1", appsDigest: digest, startedAt: seen, seenAt: seen)
    }

    @Test func aRelayAloneSendsConnectorsNoList() async throws {
        try await Self.withStore { store in
            let directory = RelayDirectory(own: Self.own, store: store, shared: false, software: "1", digest: { "same" }, logger: Logger(label: "test"))
            #expect(directory.relays == nil)
            #expect(await directory.poll())
            #expect(directory.relays == nil)
            // It still announces itself (the status page and other tools read the table).
            let announced = try await store.relays(seenSince: .distantPast).map(\.address)
            #expect(announced == [Self.own.address])
        }
    }

    @Test func aSharedStoreListsTheRelaysAnnouncedLatelyOnceItWasRead() async throws {
        try await Self.withStore { store in
            let directory = RelayDirectory(own: Self.own, store: store, shared: true, software: "1", digest: { "same" }, logger: Logger(label: "test"))
            // Before the first read: no list, so connectors keep to what they dial.
            #expect(directory.relays == nil)
            let now = Date()
            try await store.announceRelay(Self.other("relay-b.example.com:8443", seen: now - 5))
            try await store.announceRelay(Self.other("relay-0.example.com:8443", seen: now - 60))
            let updates = directory.updates()
            #expect(await directory.poll())
            #expect(directory.relays?.map(\.address) == ["relay-a.example.com:8443", "relay-b.example.com:8443"])
            var iterator = updates.makeAsyncIterator()
            #expect(await iterator.next()?.count == 2)
            #expect(directory.others.map(\.address) == ["relay-b.example.com:8443"])
        }
    }

    @Test func aRelayThatStopsLeavesTheStoreAndTheListItGives() async throws {
        try await Self.withStore { store in
            let directory = RelayDirectory(own: Self.own, store: store, shared: true, software: "1", digest: { "same" }, logger: Logger(label: "test"))
            try await store.announceRelay(Self.other("relay-b.example.com:8443", seen: Date()))
            #expect(await directory.poll())
            let running = Task { await directory.run(interval: .milliseconds(20)) }
            try await Task.sleep(for: .milliseconds(100))
            running.cancel()
            await running.value
            #expect(directory.relays?.map(\.address) == ["relay-b.example.com:8443"])
            let left = try await store.relays(seenSince: .distantPast).map(\.address)
            #expect(left == ["relay-b.example.com:8443"])
        }
    }
}
