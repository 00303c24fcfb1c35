import HTTPTypes
import SallyportConfig
import SallyportPluginAPI
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

@Suite struct HeaderSSOTests {
    let alice = Identity(
        userPrincipalName: "alice@corp.example", subject: "s-1", issuer: "https://i", provider: "corp",
        displayName: "Alice\nInjected: yes", groups: ["staff", "payroll"], claims: ["department": ["finance"]]
    )

    func stage(_ headers: [String: String], separator: String? = nil) throws -> SSOStage {
        var settings: [String: ConfigValue] = ["headers": .map(headers.mapValues { .string($0) })]
        if let separator { settings["groupSeparator"] = .string(separator) }
        let app = AppConfig(
            name: "app", externalURL: try ExternalURL(parsing: "https://app.example/"), internalURL: try InternalURL(parsing: "http://backend/"),
            preAuthentication: .authenticated(AccessPolicy(method: .oidc, provider: "corp")),
            sso: SSOConfig(handler: "header", settings: settings)
        )
        return SSOStage(app: app)
    }

    @Test func setHeadersReplaceEveryClientSpelling() throws {
        var request = HTTPRequest(method: .get, scheme: "http", authority: "backend", path: "/")
        for (name, value) in [("X-Remote-User", "mallory"), ("x-remote-user", "m2"), ("X_Remote_User", "m3"), ("X-REMOTE-GROUPS", "admins"), ("X-Other", "kept")] {
            request.headerFields.append(HTTPField(name: HTTPField.Name(name)!, value: value))
        }
        try stage(["X-Remote-User": "{upn}", "X-Remote-Groups": "{groups}", "X-Remote-Who": "{name} <{email}> {department}"], separator: ";")
            .apply(to: &request, identity: alice)
        #expect(request.headerFields[values: HTTPField.Name("X-Remote-User")!] == ["alice@corp.example"])
        #expect(!request.headerFields.contains { $0.name.canonicalName == "x_remote_user" })
        #expect(request.headerFields[values: HTTPField.Name("X-Remote-Groups")!] == ["staff;payroll"])
        #expect(request.headerFields[HTTPField.Name("X-Remote-Who")!] == "Alice Injected: yes <> finance", "control characters become spaces")
        #expect(request.headerFields[HTTPField.Name("X-Other")!] == "kept")
    }

    @Test func missingIdentityAndUnknownHandlersRefuse() throws {
        var request = HTTPRequest(method: .get, scheme: "http", authority: "backend", path: "/")
        #expect(throws: SSOStage.Refusal.self) { try stage(["X-User": "{upn}"]).apply(to: &request, identity: nil) }
        #expect(throws: SSOStage.Refusal.self) { try SSOStage.unavailable(reason: "x").apply(to: &request, identity: alice) }
        try SSOStage.passthrough.apply(to: &request, identity: nil)
    }
}
