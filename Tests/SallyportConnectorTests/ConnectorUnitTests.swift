import HTTPTypes
import SallyportConfig
import SallyportPluginAPI
import SallyportSSO
import Testing

@testable import SallyportConnector

@Suite struct BackoffTests {
    @Test func growsExponentiallyUpToTheCap() {
        var backoff = Backoff(base: .milliseconds(100), cap: .seconds(2), stableAfter: .seconds(30))
        var delays: [Duration] = []
        for _ in 0..<8 { delays.append(backoff.next(lastUptime: .zero, random: { $0.upperBound })) }
        #expect(delays == [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1600), .seconds(2), .seconds(2), .seconds(2)])
    }

    @Test func jitterStaysWithinATenthAndTheCeiling() {
        var backoff = Backoff(base: .seconds(1), cap: .seconds(30))
        for _ in 0..<4 { _ = backoff.next(lastUptime: .zero) }
        for _ in 0..<100 {
            var copy = backoff
            let delay = copy.next(lastUptime: .zero)
            #expect(delay >= .seconds(1.6) && delay <= .seconds(16))
        }
    }

    @Test func aStableConnectionResetsTheSequence() {
        var backoff = Backoff(base: .milliseconds(100), cap: .seconds(30), stableAfter: .seconds(10))
        for _ in 0..<6 { _ = backoff.next(lastUptime: .zero) }
        #expect(backoff.next(lastUptime: .seconds(11), random: { $0.upperBound }) == .milliseconds(100))
    }
}

@Suite struct BackendRequestTests {
    @Test func mapsPathPrefixes() {
        #expect(BackendForwarder.mapPath("/", from: "/", to: "/") == "/")
        #expect(BackendForwarder.mapPath("/a/b?x=1", from: "/", to: "/app/") == "/app/a/b?x=1")
        #expect(BackendForwarder.mapPath("/hr/people", from: "/hr/", to: "/") == "/people")
        #expect(BackendForwarder.mapPath("/hr?q=1", from: "/hr/", to: "/intranet/hr/") == "/intranet/hr/?q=1")
        #expect(BackendForwarder.mapPath("/hr/", from: "/hr/", to: "/x/") == "/x/")
    }

    @Test func internalAuthorityOmitsDefaultPorts() throws {
        let http = try ConfigLoader.parseApp(yaml: Self.yaml(internal: "http://wiki.corp:80/"), file: "t.yaml").internalURL
        let custom = try ConfigLoader.parseApp(yaml: Self.yaml(internal: "https://wiki.corp:8443/"), file: "t.yaml").internalURL
        #expect(BackendForwarder.internalAuthority(http) == "wiki.corp")
        #expect(BackendForwarder.internalAuthority(custom) == "wiki.corp:8443")
    }

    @Test func backendRequestCarriesForwardingHeadersAndNoTunnelFields() throws {
        let app = try ConfigLoader.parseApp(yaml: Self.yaml(internal: "http://10.1.2.3:8080/base/"), file: "t.yaml")
        var head = HTTPRequest(method: .get, scheme: "https", authority: "wiki.example.com", path: "/page?x=1")
        head.headerFields[HTTPField.Name("sallyport-app")!] = "wiki"
        head.headerFields[HTTPField.Name("sallyport-client-address")!] = "203.0.113.9"
        head.headerFields[HTTPField.Name("sallyport-request-id")!] = "r1"
        head.headerFields[.accept] = "text/html"
        let request = BackendForwarder.backendRequest(head, app: app, upgrade: nil)
        #expect(request.authority == "10.1.2.3:8080")
        #expect(request.path == "/base/page?x=1")
        #expect(request.scheme == "http")
        #expect(request.headerFields[HTTPField.Name("X-Forwarded-For")!] == "203.0.113.9")
        #expect(request.headerFields[HTTPField.Name("X-Forwarded-Proto")!] == "https")
        #expect(request.headerFields[HTTPField.Name("X-Forwarded-Host")!] == "wiki.example.com")
        #expect(request.headerFields[.accept] == "text/html")
        #expect(!request.headerFields.contains { $0.name.canonicalName.hasPrefix("sallyport-") })
    }

    static func yaml(internal backend: String) -> String {
        """
        name: wiki
        externalURL: https://wiki.example.com/
        internalURL: \(backend)
        connectorGroup: default
        preAuthentication: passthrough
        """
    }
}

@Suite struct AppTableTests {
    @Test func ignoresOlderGenerations() throws {
        let app = try ConfigLoader.parseApp(yaml: BackendRequestTests.yaml(internal: "http://a/"), file: "t.yaml")
        let table = AppTable()
        #expect(table.apply(generation: 3, apps: [app]))
        #expect(!table.apply(generation: 2, apps: []))
        #expect(table.app(named: "wiki") != nil)
        #expect(table.apply(generation: 4, apps: []))
        #expect(table.app(named: "wiki") == nil)
    }
}

@Suite struct SSOPipelineTests {
    /// A handler that says which factory call made it, to tell kept handlers from new ones.
    struct Numbered: SSOHandler {
        let number: Int
        func prepare(_ request: inout BackendRequest, identity: Identity?, attempt: Int) async -> RequestDecision {
            request.headers.set("X-Handler", "\(number)")
            return .proceed
        }
    }

    final class CountingFactory: SSOHandlerFactory, @unchecked Sendable {
        let name = "counting"
        let requiresIdentity = false
        var made = 0
        func makeHandler(context: HandlerContext) throws -> any SSOHandler {
            if context.settings["fail"] != nil { throw SettingsError(key: "fail", message: "told to fail") }
            made += 1
            return Numbered(number: made)
        }
    }

    func app(_ name: String, handler: String, settings: [String: ConfigValue] = [:], internalPort: Int = 80) throws -> AppConfig {
        AppConfig(
            name: name, externalURL: try ExternalURL(parsing: "https://\(name).example/"), internalURL: try InternalURL(parsing: "http://backend:\(internalPort)/"),
            sso: SSOConfig(handler: handler, settings: settings, settingLines: settings.isEmpty ? [:] : ["fail": 9]), sourceFile: "apps/\(name).yaml"
        )
    }

    @Test func handlersAreKeptForUnchangedAppsAndFailuresStayWithTheirApp() throws {
        let factory = CountingFactory()
        var handlers = HandlerCatalog.builtIn
        let added = handlers.add(factory)
        let addedAgain = handlers.add(CountingFactory())
        #expect(added)
        #expect(!addedAgain, "a second factory of the same name is refused")
        let table = AppTable(handlers: handlers)
        table.apply(generation: 1, apps: [try app("a", handler: "counting"), try app("b", handler: "nonexistent"), try app("c", handler: "passthrough")])
        #expect(factory.made == 1)
        guard case .handler(_, let name, _)? = table.entry(named: "a")?.1 else { Issue.record("a has no handler"); return }
        #expect(name == "counting")
        guard case .unavailable(let error)? = table.entry(named: "b")?.1 else { Issue.record("b must be unavailable"); return }
        #expect(error.key == "sso.handler")
        guard case .passthrough? = table.entry(named: "c")?.1 else { Issue.record("c is passthrough"); return }

        // The same app again keeps its handler; a changed app gets a new one; bad settings fail only that app.
        table.apply(generation: 2, apps: [try app("a", handler: "counting"), try app("d", handler: "counting", settings: ["fail": .bool(true)])])
        #expect(factory.made == 1)
        guard case .unavailable(let failed)? = table.entry(named: "d")?.1 else { Issue.record("d must be unavailable"); return }
        #expect(failed.key == "sso.fail")
        #expect(failed.line == 9)
        table.apply(generation: 3, apps: [try app("a", handler: "counting", internalPort: 81)])
        #expect(factory.made == 2)
    }

    @Test func handlerChangesAreCheckedAndCleaned() throws {
        var request = HTTPRequest(method: .get, scheme: "http", authority: "backend", path: "/x")
        request.headerFields[HTTPField.Name("X-Kept")!] = "1"
        var changed = PluginRequest.make(request)
        #expect(changed.headers["x-kept"] == "1")
        changed.headers.set("Authorization", "Negotiate abc")
        changed.headers.append("Connection", "close")
        changed.headers.append("Sallyport-App", "other")
        changed.headers.append("Host", "evil")
        changed.path = "/y"
        let applied = try #require(PluginRequest.apply(changed, to: request))
        #expect(applied.path == "/y")
        #expect(applied.headerFields[.authorization] == "Negotiate abc")
        #expect(applied.headerFields[.connection] == nil)
        #expect(applied.headerFields[HTTPField.Name("Sallyport-App")!] == nil)
        #expect(applied.headerFields[HTTPField.Name("Host")!] == nil)
        #expect(applied.authority == "backend")
        changed.headers.append("Bad Name", "x")
        #expect(PluginRequest.apply(changed, to: request) == nil)
        var badValue = PluginRequest.make(request)
        badValue.headers.append("X-Injected", "a\r\nEvil: 1")
        #expect(PluginRequest.apply(badValue, to: request) == nil)
    }
}
