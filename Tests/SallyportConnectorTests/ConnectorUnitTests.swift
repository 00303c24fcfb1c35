import Foundation
import HTTPTypes
import SallyportConfig
import SallyportPluginAPI
import SallyportSSO
import SallyportTunnel
import SallyportWire
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

    /// The defaults docs/tunnel-protocol.md promises: 2 s doubling to a 5 s cap; stable after 30 s.
    @Test func defaultsAreTheDocumentedOnes() {
        var backoff = Backoff()
        var ceilings: [Duration] = []
        for _ in 0..<6 { ceilings.append(backoff.next(lastUptime: .zero, random: { $0.upperBound })) }
        #expect(ceilings == [.seconds(2), .seconds(4), .seconds(5), .seconds(5), .seconds(5), .seconds(5)])
        #expect(backoff.next(lastUptime: .seconds(31), random: { $0.upperBound }) == .seconds(2))
        var jittered = Backoff()
        for _ in 0..<1 { _ = jittered.next(lastUptime: .zero) }
        for _ in 0..<100 {
            var copy = jittered
            let delay = copy.next(lastUptime: .zero)
            #expect(delay >= .seconds(0.4) && delay <= .seconds(4), "full jitter within 10–100 % of the 4 s ceiling: \(delay)")
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
        #expect(BackendHead.mapPath("/", from: "/", to: "/") == "/")
        #expect(BackendHead.mapPath("/a/b?x=1", from: "/", to: "/app/") == "/app/a/b?x=1")
        #expect(BackendHead.mapPath("/hr/people", from: "/hr/", to: "/") == "/people")
        #expect(BackendHead.mapPath("/hr?q=1", from: "/hr/", to: "/intranet/hr/") == "/intranet/hr/?q=1")
        #expect(BackendHead.mapPath("/hr/", from: "/hr/", to: "/x/") == "/x/")
    }

    @Test func internalAuthorityOmitsDefaultPorts() throws {
        let http = try ConfigLoader.parseApp(yaml: Self.yaml(internal: "http://wiki.corp:80/"), file: "t.yaml").internalURL
        let custom = try ConfigLoader.parseApp(yaml: Self.yaml(internal: "https://wiki.corp:8443/"), file: "t.yaml").internalURL
        #expect(BackendHead.internalAuthority(http) == "wiki.corp")
        #expect(BackendHead.internalAuthority(custom) == "wiki.corp:8443")
    }

    @Test func backendRequestCarriesForwardingHeadersAndNoTunnelFields() throws {
        let app = try ConfigLoader.parseApp(yaml: Self.yaml(internal: "http://10.1.2.3:8080/base/"), file: "t.yaml")
        var head = HTTPRequest(method: .get, scheme: "https", authority: "wiki.example.com", path: "/page?x=1")
        head.headerFields[HTTPField.Name("sallyport-app")!] = "wiki"
        head.headerFields[HTTPField.Name("sallyport-client-address")!] = "203.0.113.9"
        head.headerFields[HTTPField.Name("sallyport-request-id")!] = "r1"
        head.headerFields[.accept] = "text/html"
        let request = BackendHead.make(head, app: app.forConnector, upgrade: nil, hasBody: false)
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
    @Test func ignoresOlderGenerations() async throws {
        let app = try ConfigLoader.parseApp(yaml: BackendRequestTests.yaml(internal: "http://a/"), file: "t.yaml").forConnector
        let table = AppTable()
        #expect(await table.apply(ConfigVersion(epoch: 1, generation: 3), apps: [app]).applied)
        #expect(await !table.apply(ConfigVersion(epoch: 1, generation: 2), apps: []).applied)
        #expect(table.app(named: "wiki") != nil)
        #expect(await table.apply(ConfigVersion(epoch: 1, generation: 4), apps: []).applied)
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

    func app(_ name: String, handler: String, settings: [String: ConfigValue] = [:], internalPort: Int = 80, line: Int = 9) throws -> ConnectorApp {
        ConnectorApp(
            name: name, internalURL: try InternalURL(parsing: "http://backend:\(internalPort)/"),
            sso: .init(handler: handler, settings: settings),
            source: .init(file: "apps/\(name).yaml", positions: settings.isEmpty ? [:] : ["sso.fail": .init(line: line)])
        )
    }

    static let epoch: UInt64 = 0xA

    func version(_ generation: UInt64, epoch: UInt64 = epoch) -> ConfigVersion { ConfigVersion(epoch: epoch, generation: generation) }

    @Test func handlersAreKeptForUnchangedAppsAndFailuresStayWithTheirApp() async throws {
        let factory = CountingFactory()
        var handlers = HandlerCatalog.builtIn
        let added = handlers.add(factory)
        let addedAgain = handlers.add(CountingFactory())
        #expect(added)
        #expect(!addedAgain, "a second factory of the same name is refused")
        let table = AppTable(handlers: handlers)
        await table.apply(version(1), apps: [try app("a", handler: "counting"), try app("b", handler: "nonexistent"), try app("c", handler: "passthrough")])
        #expect(factory.made == 1)
        guard case .handler(let step)? = table.entry(named: "a")?.1 else { Issue.record("a has no handler"); return }
        #expect(step.name == "counting")
        guard case .unavailable(let errors)? = table.entry(named: "b")?.1 else { Issue.record("b must be unavailable"); return }
        #expect(errors.map(\.key) == ["sso.handler"])
        guard case .passthrough? = table.entry(named: "c")?.1 else { Issue.record("c is passthrough"); return }

        // The same app again keeps its handler; a changed app gets a new one; bad settings fail only that app.
        await table.apply(version(2), apps: [try app("a", handler: "counting"), try app("d", handler: "counting", settings: ["fail": .bool(true)])])
        #expect(factory.made == 1)
        guard case .unavailable(let failures)? = table.entry(named: "d")?.1, let failed = failures.first else { Issue.record("d must be unavailable"); return }
        #expect(failed.key == "sso.fail")
        #expect(failed.line == 9)
        await table.apply(version(3), apps: [try app("a", handler: "counting", internalPort: 81)])
        #expect(factory.made == 2)
        // Only the place of its settings in the file changed: nothing a connector uses, so the handler stays.
        await table.apply(version(4), apps: [try app("a", handler: "counting", internalPort: 81, line: 12)])
        #expect(factory.made == 2)
    }

    /// A relay that restarts counts generations from 1 again: its pushes carry a new epoch and must win over
    /// the higher generation the connector held (before, the connector kept its old apps for good).
    @Test func aPushOfANewRelayEpochReplacesAHigherGeneration() async throws {
        let table = AppTable()
        #expect(await table.apply(version(7), apps: [try app("old", handler: "passthrough")]).applied)
        // The same relay's older push (a refresh answered late) loses, and the newer version is acknowledged.
        let stale = await table.apply(version(5), apps: [])
        #expect(!stale.applied)
        #expect(stale.held == version(7))
        #expect(table.app(named: "old") != nil)

        let restarted = await table.apply(version(1, epoch: 0xB), apps: [try app("new", handler: "passthrough")])
        #expect(restarted.applied)
        #expect(restarted.held == version(1, epoch: 0xB))
        #expect(table.app(named: "new") != nil)
        #expect(table.app(named: "old") == nil)
        #expect(await table.apply(version(2, epoch: 0xB), apps: []).applied)
    }

    /// Tunnels to two relays sharing a store bring pushes of two epochs in turn. One relay's late push of an
    /// older generation (sent on its second tunnel before its newest) must lose even while the connector holds
    /// the other relay's version.
    @Test func anOlderGenerationOfARelayLosesWhileAnotherRelaysVersionIsHeld() async throws {
        let table = AppTable()
        let relayA: UInt64 = 0xA
        let relayB: UInt64 = 0xB
        #expect(await table.apply(version(5, epoch: relayA), apps: [try app("new", handler: "passthrough")]).applied)
        #expect(await table.apply(version(9, epoch: relayB), apps: [try app("new", handler: "passthrough")]).applied)
        let late = await table.apply(version(4, epoch: relayA), apps: [try app("old", handler: "passthrough")])
        #expect(!late.applied)
        #expect(late.held == version(9, epoch: relayB))
        #expect(table.app(named: "new") != nil)
        #expect(table.app(named: "old") == nil)
        // Relay A's own newest, again or newer, is applied (and acknowledged to it).
        let again = await table.apply(version(5, epoch: relayA), apps: [try app("new", handler: "passthrough")])
        #expect(again.applied)
        #expect(again.held == version(5, epoch: relayA))
    }

    /// After a move the relay pushes the new group's apps at the version the connector already holds; they must
    /// still replace the old group's, and a late push on a tunnel of the old group must not bring those back.
    @Test func aNewGroupTakesItsAppsAtTheSameVersionAndIgnoresTheOldGroup() async throws {
        let table = AppTable(handlers: .builtIn)
        #expect(!table.join(group: "red"))
        #expect(await table.apply(version(5), apps: [try app("red-app", handler: "passthrough")], group: "red").applied)
        #expect(table.join(group: "blue"))
        #expect(await table.apply(version(5), apps: [try app("blue-app", handler: "passthrough")], group: "blue").applied)
        #expect(table.app(named: "blue-app") != nil)
        #expect(table.app(named: "red-app") == nil)
        #expect(await !table.apply(version(6), apps: [try app("red-app", handler: "passthrough")], group: "red").applied)
        #expect(table.app(named: "red-app") == nil)
        #expect(!table.join(group: "blue"))
    }

    @Test func handlerChangesAreCheckedAndCleaned() throws {
        var request = HTTPRequest(method: .get, scheme: "http", authority: "backend", path: "/x")
        request.headerFields[HTTPField.Name("X-Kept")!] = "1"
        var changed = PluginRequest.make(request, hasBody: false, canRetry: true)
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
        var badValue = PluginRequest.make(request, hasBody: false, canRetry: true)
        badValue.headers.append("X-Injected", "a\r\nEvil: 1")
        #expect(PluginRequest.apply(badValue, to: request) == nil)
    }

    /// `inspect` may rewrite the response head's fields, but framing keeps the backend's values.
    @Test func responseChangesKeepFraming() throws {
        var response = HTTPResponse(status: .unauthorized)
        response.headerFields[.contentLength] = "12"
        response.headerFields[.wwwAuthenticate] = "Basic realm=x"
        var changed = PluginRequest.response(response)
        changed.headers.remove("WWW-Authenticate")
        changed.headers.set("Content-Length", "9999")
        changed.headers.append("Transfer-Encoding", "chunked")
        changed.headers.append("X-Added", "yes")
        let applied = try #require(PluginRequest.apply(changed, to: response))
        #expect(applied.status == .unauthorized)
        #expect(applied.headerFields[.wwwAuthenticate] == nil)
        #expect(applied.headerFields[values: .contentLength] == ["12"])
        #expect(applied.headerFields[.transferEncoding] == nil)
        #expect(applied.headerFields[HTTPField.Name("X-Added")!] == "yes")
        changed.headers.append("X-Bad", "a\nb")
        #expect(PluginRequest.apply(changed, to: response) == nil)
    }

    /// Every tunnel receives the same push: the handler is made once, whatever the number of tunnels.
    @Test func onePushOnManyTunnelsMakesEachHandlerOnce() async throws {
        let factory = CountingFactory()
        var handlers = HandlerCatalog.builtIn
        _ = handlers.add(factory)
        let table = AppTable(handlers: handlers)
        let apps = [try app("a", handler: "counting"), try app("b", handler: "counting", internalPort: 81)]
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<4 { group.addTask { _ = await table.apply(self.version(1), apps: apps) } }
        }
        #expect(factory.made == 2, "made \(factory.made) handlers for 2 apps")
    }

    /// A handler that records its shutdown.
    final class Closing: SSOHandler, @unchecked Sendable {
        let app: String
        var closed = false
        init(app: String) { self.app = app }
        func prepare(_ request: inout BackendRequest, identity: Identity?, attempt: Int) async -> RequestDecision { .proceed }
        func shutdown() async { closed = true }
    }

    final class ClosingFactory: SSOHandlerFactory, @unchecked Sendable {
        let name = "closing"
        let requiresIdentity = false
        var made: [Closing] = []
        /// The file the factory needs; missing: it fails as a factory with a missing credential file would.
        var needs: String?
        func makeHandler(context: HandlerContext) throws -> any SSOHandler {
            if let needs, !FileManager.default.fileExists(atPath: needs) { throw SettingsError(key: "file", message: "\(needs) does not exist") }
            made.append(Closing(app: context.appName))
            return made.last!
        }
    }

    /// A replaced handler is shut down; one kept for an unchanged app is not; all are when the connector stops.
    @Test func replacedHandlersAreShutDown() async throws {
        let factory = ClosingFactory()
        var handlers = HandlerCatalog.builtIn
        _ = handlers.add(factory)
        let table = AppTable(handlers: handlers)
        await table.apply(version(1), apps: [try app("a", handler: "closing"), try app("b", handler: "closing", internalPort: 81)])
        await table.apply(version(2), apps: [try app("a", handler: "closing", internalPort: 82), try app("b", handler: "closing", internalPort: 81)])
        // Identified by app, not by position: what order handlers are made in is not part of the contract.
        #expect(factory.made.map(\.app).sorted() == ["a", "a", "b"])
        let first = try #require(factory.made.first { $0.app == "a" })
        let second = try #require(factory.made.last { $0.app == "a" })
        let kept = try #require(factory.made.first { $0.app == "b" })
        try await waitUntil { first.closed }
        #expect(!kept.closed && !second.closed)
        await table.shutDownHandlers()
        #expect(factory.made.allSatisfy { $0.closed })
    }

    /// A factory that failed (a file it needs was missing) is tried again without a change of settings.
    @Test func aFailedHandlerIsMadeAgainOnceItCanBe() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sallyport-needed-\(UInt64.random(in: 0...UInt64.max))").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        let factory = ClosingFactory()
        factory.needs = file
        var handlers = HandlerCatalog.builtIn
        _ = handlers.add(factory)
        let table = AppTable(handlers: handlers)
        await table.apply(version(1), apps: [try app("a", handler: "closing")])
        guard case .unavailable? = table.entry(named: "a")?.1 else { Issue.record("a must be unavailable"); return }
        #expect(await table.retryUnavailable().isEmpty, "still missing")
        _ = FileManager.default.createFile(atPath: file, contents: Data())
        #expect(await table.retryUnavailable() == ["a"])
        guard case .handler? = table.entry(named: "a")?.1 else { Issue.record("a must have its handler now"); return }
        #expect(factory.made.count == 1)
    }

    func waitUntil(_ condition: () -> Bool) async throws {
        for _ in 0..<200 where !condition() { try await Task.sleep(for: .milliseconds(10)) }
        #expect(condition())
    }
}
