import Foundation
import Logging
import SallyportConfig
import Testing

@testable import SallyportRelay

@Suite struct RoutingTableTests {
    static func app(_ name: String, _ external: String) throws -> AppConfig {
        try ConfigLoader.parseApp(
            yaml: """
                name: \(name)
                externalURL: \(external)
                internalURL: http://127.0.0.1:8080/
                connectorGroup: default
                preAuthentication: passthrough
                """,
            file: "\(name).yaml"
        )
    }

    @Test func longestPrefixWinsAndHostIsCaseAndPortInsensitive() throws {
        let table = RoutingTable(apps: [
            try Self.app("root", "https://apps.example.com/"),
            try Self.app("hr", "https://apps.example.com/hr/"),
            try Self.app("hrpay", "https://apps.example.com/hr/pay/"),
            try Self.app("wiki", "https://wiki.example.com/"),
        ])
        #expect(table.route(authority: "apps.example.com", path: "/")?.name == "root")
        #expect(table.route(authority: "APPS.example.com:443", path: "/hr/x")?.name == "hr")
        #expect(table.route(authority: "apps.example.com", path: "/hr/pay/slip?id=1")?.name == "hrpay")
        #expect(table.route(authority: "apps.example.com", path: "/hr")?.name == "hr")
        #expect(table.route(authority: "apps.example.com", path: "/hrx")?.name == "root")
        #expect(table.route(authority: "wiki.example.com.", path: "/a")?.name == "wiki")
        #expect(table.route(authority: "other.example.com", path: "/") == nil)
    }

    @Test func prefixOnlyAppDoesNotCatchOtherPaths() throws {
        let table = RoutingTable(apps: [try Self.app("hr", "https://apps.example.com/hr/")])
        #expect(table.route(authority: "apps.example.com", path: "/") == nil)
        #expect(table.route(authority: "apps.example.com", path: "/finance/") == nil)
    }

    @Test func hostnameHandlesIPv6() {
        #expect(RoutingTable.hostname("[::1]:8443") == "::1")
        #expect(RoutingTable.hostname("Example.COM:8443") == "example.com")
    }
}

@Suite struct AppCatalogTests {
    @Test func badEditKeepsLastGoodVersionAndBumpsGenerationOnlyOnChange() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("catalog-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/wiki.yaml"
        func write(_ backend: String) throws {
            try """
                name: wiki
                externalURL: https://wiki.example.com/
                internalURL: \(backend)
                connectorGroup: default
                preAuthentication: passthrough
                """.write(toFile: file, atomically: true, encoding: .utf8)
        }
        let catalog = AppCatalog(directory: directory, logger: Logger(label: "test"))
        try write("http://10.0.0.1/")
        #expect(catalog.reload())
        #expect(catalog.snapshot.generation == 1)
        #expect(!catalog.reload())
        #expect(catalog.snapshot.generation == 1)

        try "name: wiki\nexternalURL: [broken".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(!catalog.reload())
        #expect(catalog.snapshot.apps.first?.internalURL.host == "10.0.0.1")
        #expect(catalog.lastErrors.first?.file == file)

        try write("http://10.0.0.2/")
        #expect(catalog.reload())
        #expect(catalog.snapshot.generation == 2)
        #expect(catalog.snapshot.appVersions["wiki"] == AppCatalog.AppVersion(changed: 2, introduced: 1))
        #expect(catalog.lastErrors.isEmpty)

        try FileManager.default.removeItem(atPath: file)
        #expect(catalog.reload())
        #expect(catalog.snapshot.apps.isEmpty)
    }
}
