import HTTPTypes
import SallyportConfig
import SallyportHTTP
import SallyportPluginAPI
import SallyportTunnel
import SallyportWire
import Testing

@testable import SallyportRelay

@Suite struct AdmissionTests {
    static let routes = RoutingTable(apps: [
        try! RoutingTableTests.app("wiki", "https://wiki.example.com/"),
        try! RoutingTableTests.app("hr", "https://apps.example.com/hr/"),
    ])

    static func head(_ path: String, host: String? = "wiki.example.com", fields: Int = 0) -> HTTPRequest {
        var head = HTTPRequest(method: .get, scheme: "https", authority: host, path: path)
        for index in 0..<fields { head.headerFields.append(HTTPField(name: HTTPField.Name("X-F\(index)")!, value: "v")) }
        return head
    }

    func decide(_ head: HTTPRequest, limits: EdgeLimits = EdgeLimits(), isHTTP1: Bool = true) -> Admission.Decision {
        Admission.decide(head, routes: Self.routes, limits: limits, isHTTP1: isHTTP1)
    }

    func status(_ decision: Admission.Decision) -> Int? {
        if case .answer(let page) = decision { return page.status.code }
        return nil
    }

    @Test func limitsComeFirst() {
        let limits = EdgeLimits(maxHeaderCount: 10, maxRequestLineBytes: 300)
        #expect(status(decide(Self.head("/" + String(repeating: "a", count: 400)), limits: limits)) == 414)
        #expect(status(decide(Self.head("/", fields: 11), limits: limits)) == 431)
        var large = Self.head("/")
        large.headerFields.append(HTTPField(name: HTTPField.Name("X-Large")!, value: String(repeating: "x", count: 5000)))
        #expect(status(decide(large, limits: EdgeLimits(maxHeaderBytes: 4096))) == 431)
        #expect(status(decide(large, limits: EdgeLimits(maxHeaderBytes: 8192))) == nil)
        #expect(status(decide(Self.head("/", host: nil))) == 400)
        #expect(status(decide(Self.head("*"))) == 400)
    }

    /// `Host: app:@evil.example` routed to the app and reached the backend as X-Forwarded-Host; two hosts
    /// reached passthrough backends.
    @Test func malformedAndDuplicateHostsAreRefused() {
        for host in ["wiki.example.com:@evil.example", "wiki.example.com:", "wiki.example.com:80x", "wiki.example.com:99999", "user@wiki.example.com", "wiki example", "[::1", "[zz]:80"] {
            #expect(status(decide(Self.head("/", host: host))) == 400, "\(host)")
        }
        for host in ["wiki.example.com", "wiki.example.com:8443", "WIKI.example.com.", "[::1]:443", "127.0.0.1"] {
            #expect(status(decide(Self.head("/", host: host))) != 400, "\(host)")
        }
        var twice = Self.head("/")
        twice.headerFields.append(HTTPField(name: Admission.hostField, value: "wiki.example.com"))
        #expect(status(decide(twice)) == 400, "HTTP/1.1: a second Host line")
        #expect(status(decide(twice, isHTTP1: false)) == nil, "HTTP/2: a host field equal to :authority is redundant")
        var other = Self.head("/")
        other.headerFields.append(HTTPField(name: Admission.hostField, value: "admin.internal"))
        #expect(status(decide(other, isHTTP1: false)) == 400, "HTTP/2: host and :authority differ")
    }

    @Test func theRelaysOwnPathsAreNeverForwarded() {
        guard case .health = decide(Self.head("/.sallyport/health", host: "unknown.example.com")) else {
            Issue.record("health is answered on any host")
            return
        }
        guard case .relayRoute(let authority, let providers) = decide(Self.head("/.sallyport/auth/sign-out")) else {
            Issue.record("a relay path on a published host is the relay's")
            return
        }
        #expect(authority == "wiki.example.com")
        #expect(providers.isEmpty)
        #expect(status(decide(Self.head("/.sallyport/auth/callback", host: "unknown.example.com"))) == 404)
        #expect(status(decide(Self.head("/.sallyport/anything"))) == nil)
    }

    @Test func routesToTheApp() {
        guard case .forward(let app, let authority, _) = decide(Self.head("/hr/people", host: "APPS.example.com:443")) else {
            Issue.record("routed")
            return
        }
        #expect(app.name == "hr")
        #expect(authority == "APPS.example.com:443")
        #expect(status(decide(Self.head("/finance", host: "apps.example.com"))) == 404)
    }
}

@Suite struct TunnelHeadTests {
    @Test func carriesEndToEndFieldsAndRelayMetadataOnly() throws {
        var head = HTTPRequest(method: .get, scheme: "https", authority: "wiki.example.com", path: "/page")
        let spoofed: [(String, String)] = [
            ("X-Forwarded-For", "198.51.100.1"), ("X-Real-IP", "198.51.100.2"), ("Forwarded", "for=x"), ("Sallyport-Identity", "forged"),
            ("sallyport_app", "other"), ("Connection", "X-Hop"), ("X-Hop", "secret"), ("Proxy-Connection", "keep-alive"), ("TE", "trailers"),
            ("Trailer", "X-T"), ("Expect", "100-continue"), ("Cookie", "__Host-sallyport-corp=sealed; theme=dark"), ("X-Kept", "yes"),
        ]
        for (name, value) in spoofed { head.headerFields.append(HTTPField(name: HTTPField.Name(name)!, value: value)) }
        let context = EdgeRequestContext(clientAddress: "203.0.113.7", connectionID: "c1", isHTTP1: true)
        let identity = Identity(userPrincipalName: "alice@corp.example", subject: "s", issuer: "https://idp", provider: "corp")
        let tunnel = TunnelHead.make(from: head, app: "wiki", identity: identity, upgrade: nil, requestID: "r1", context: context)
        let fields = Dictionary(tunnel.headerFields.map { ($0.name.canonicalName, $0.value) }, uniquingKeysWith: { a, b in a + "," + b })
        #expect(fields["x-kept"] == "yes")
        #expect(fields["cookie"] == "theme=dark")
        for removed in ["x-forwarded-for", "x-real-ip", "forwarded", "sallyport_app", "connection", "x-hop", "proxy-connection", "te", "trailer", "expect"] {
            #expect(fields[removed] == nil, "\(removed) crossed the tunnel")
        }
        #expect(fields["sallyport-app"] == "wiki")
        #expect(fields["sallyport-client-address"] == "203.0.113.7")
        #expect(fields["sallyport-client-connection"] == "c1")
        #expect(fields["sallyport-request-id"] == "r1")
        #expect(fields["sallyport-identity"].flatMap(IdentityField.decode)?.userPrincipalName == "alice@corp.example")
    }

    @Test func onlyValidWebSocketHandshakesMaySwitch() throws {
        var app = try RoutingTableTests.app("wiki", "https://wiki.example.com/")
        func decision(_ edit: (inout HTTPRequest) -> Void, isHTTP1: Bool = true) -> String {
            var head = HTTPRequest(method: .get, scheme: "https", authority: "wiki.example.com", path: "/ws")
            head.headerFields[.connection] = "keep-alive, Upgrade"
            head.headerFields[.upgrade] = "websocket"
            head.headerFields[WebSocketHandshake.keyField] = "dGhlIHNhbXBsZSBub25jZQ=="
            head.headerFields[WebSocketHandshake.versionField] = "13"
            edit(&head)
            switch TunnelHead.upgrade(of: head, isHTTP1: isHTTP1, app: app) {
            case .none: return "none"
            case .webSocket: return "websocket"
            case .ignored: return "ignored"
            case .refused(let page): return "\(page.status.code)"
            }
        }
        #expect(decision { _ in } == "websocket")
        #expect(decision({ _ in }, isHTTP1: false) == "none")
        #expect(decision { $0.headerFields[.upgrade] = nil } == "none")
        // Anything but WebSocket is never honoured: h2c would make the connection a raw HTTP/2 pipe.
        #expect(decision { $0.headerFields[.upgrade] = "h2c" } == "ignored")
        #expect(decision { $0.headerFields[.upgrade] = "foo/1, TLS/1.3" } == "ignored")
        #expect(decision { $0.headerFields[.upgrade] = "WebSocket" } == "websocket")
        // An invalid handshake: 400.
        #expect(decision { $0.headerFields[WebSocketHandshake.versionField] = "8" } == "400")
        #expect(decision { $0.headerFields[WebSocketHandshake.keyField] = nil } == "400")
        #expect(decision { $0.headerFields[WebSocketHandshake.keyField] = "c2hvcnQ=" } == "400")
        #expect(decision { $0.method = .post } == "400")
        #expect(decision { $0.headerFields[.connection] = "keep-alive" } == "400")
        app.allowWebSocket = false
        #expect(decision { _ in } == "403")
    }
}

@Suite struct BodyReadClockTests {
    let start = ContinuousClock.now

    @Test func waitsAreBoundedAndOnlyCountedWhileReading() {
        var clock = BodyReadClock(timeout: .seconds(30), minRate: 0)
        #expect(clock.readRequested(at: start) == nil, "no request: nothing to time")
        clock.headArrived(bodyFollows: true)
        #expect(clock.readRequested(at: start) == .seconds(30))
        // A second read request in the same wait does not restart it.
        #expect(clock.readRequested(at: start + .seconds(10)) == .seconds(20))
        clock.bodyArrived(bytes: 1, at: start + .seconds(12))
        // Time without a read request (the backend is slow to take the body) is not the client's.
        #expect(clock.readRequested(at: start + .seconds(100)) == .seconds(30))
        clock.ended()
        #expect(clock.readRequested(at: start + .seconds(101)) == nil)
    }

    @Test func aSlowBodyBreaksTheRateAfterItsGrace() {
        var clock = BodyReadClock(timeout: .seconds(30), minRate: 100)
        clock.headArrived(bodyFollows: true)
        #expect(clock.readRequested(at: start) == .seconds(5), "the grace, with nothing earned yet")
        clock.bodyArrived(bytes: 1000, at: start + .seconds(1))
        // 1000 bytes earn 10 s on top of the 5 s grace; 1 s is spent.
        #expect(clock.readRequested(at: start + .seconds(50)) == .seconds(14))
        clock.bodyArrived(bytes: 1, at: start + .seconds(63))
        #expect(clock.readRequested(at: start + .seconds(63)) == .milliseconds(1010), "one byte in 13 s earns 10 ms: little is left")
        var socket = BodyReadClock(timeout: .seconds(30), minRate: 100)
        socket.headArrived(bodyFollows: false)
        #expect(socket.readRequested(at: start) == nil, "a WebSocket handshake's bytes are not a body")
    }
}
