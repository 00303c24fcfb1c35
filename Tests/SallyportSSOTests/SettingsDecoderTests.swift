import SallyportConfig
import SallyportPluginAPI
import Testing

@testable import SallyportSSO

/// `HandlerContext.decodeSettings`: typed settings, every problem at once, each at its key path; and the
/// connector placing those key paths at their line and column in the app file.
@Suite struct SettingsDecoderTests {
    struct Account: Decodable, Equatable {
        var name: String
        var password: String?
    }

    struct Settings: Decodable {
        enum Mode: String, Decodable, CaseIterable { case always, on401 }
        var realm: String
        var retries: Int
        var ratio: Double?
        var verbose: Bool?
        var mode: Mode?
        var accounts: [Account]
        var headers: OrderedSettings<String>?
        var port: UInt16?
    }

    func context(_ settings: SettingsMap) -> HandlerContext {
        HandlerContext(appName: "t", settings: settings, logger: PluginLogger { _, _, _ in }, metrics: PluginMetrics { _, _, _ in }, blockingExecutor: { $0() })
    }

    @Test func readsTypedSettingsAndKeepsMappingOrder() throws {
        let settings = try context([
            "realm": .string("payroll"), "retries": .int(2), "ratio": .int(1), "mode": .string("on401"),
            "accounts": .list([.map(["name": .string("svc")])]),
            "headers": .map(SettingsMap([.init(key: "X-B", value: .string("b")), .init(key: "X-A", value: .string("a"))])),
            "port": .int(8080), "verbose": .bool(true),
        ]).decodeSettings(Settings.self)
        #expect(settings.realm == "payroll" && settings.retries == 2 && settings.ratio == 1.0 && settings.mode == .on401 && settings.verbose == true)
        #expect(settings.accounts == [Account(name: "svc", password: nil)])
        #expect(settings.headers?.map(\.key) == ["X-B", "X-A"], "the file's order, not sorted")
        #expect(settings.port == 8080)
        // A number written where text is expected is its text, as YAML users expect.
        #expect(try context(["realm": .int(42), "retries": .int(0), "accounts": .list([])]).decodeSettings(Settings.self).realm == "42")
    }

    @Test func everyProblemIsReportedAtOnceAtItsKey() {
        let thrown = #expect(throws: SettingsErrors.self) {
            try context([
                "retries": .string("three"), "mode": .string("sometimes"),
                "accounts": .list([.map(["name": .string("a")]), .map(["password": .string("p"), "nmae": .string("b")])]),
                "port": .int(70000), "realmm": .string("typo"),
            ]).decodeSettings(Settings.self)
        }
        let errors = thrown?.errors ?? []
        let byKey = Dictionary(errors.map { ($0.key, $0.message) }, uniquingKeysWith: { a, b in a + " | " + b })
        #expect(byKey["realm"] == "required setting is missing")
        #expect(byKey["retries"] == "expected a whole number, found \"three\"")
        #expect(byKey["mode"] == "must be one of always, on401 (found \"sometimes\")")
        #expect(byKey["accounts[1].name"] == "required setting is missing")
        #expect(byKey["accounts[1].nmae"] == "unknown setting; known here: name, password")
        #expect(byKey["port"] == "70000 is out of range for this setting")
        #expect(byKey["realmm"]?.hasPrefix("unknown setting; known here: accounts, headers, mode") == true)
        #expect(errors.count == 7, "\(errors)")
    }

    @Test func aValueOfTheWrongShapeIsNamedNotCascaded() {
        let thrown = #expect(throws: SettingsErrors.self) {
            try context(["realm": .list([]), "retries": .int(1), "accounts": .string("svc")]).decodeSettings(Settings.self)
        }
        #expect(thrown?.errors == [
            SettingsError(key: "realm", message: "expected text, found a list"),
            SettingsError(key: "accounts", message: "expected a list, found \"svc\""),
        ])
    }

    /// The connector reports each error with the app file's line and column, nested keys and list items too.
    @Test func errorsArePlacedInTheAppFile() throws {
        let yaml = """
            name: payroll
            externalURL: https://payroll.example.com/
            internalURL: http://payroll.corp:8080/
            connectorGroup: default
            preAuthentication: oidc
            sso:
              handler: custom
              realm: payroll
              accounts:
                - name: svc
                  nmae: typo

            """
        let app = try ConfigLoader.parseApp(yaml: yaml, file: "apps/payroll.yaml").forConnector
        let settings = HandlerCatalog.settings(of: app)
        #expect(settings.keys == ["realm", "accounts"], "file order")
        let thrown = #expect(throws: SettingsErrors.self) { try context(settings).decodeSettings(Settings.self) }
        let errors = HandlerCatalog.errors(in: app, handler: "custom", thrown: thrown!)
        let typo = errors.first { $0.key == "sso.accounts[0].nmae" }
        #expect(typo?.file == "apps/payroll.yaml" && typo?.line == 11 && typo?.column == 7, "\(errors)")
        let missing = errors.first { $0.key == "sso.retries" }
        #expect(missing?.line == 6, "a missing key is placed at its mapping (sso): \(errors)")
    }
}
