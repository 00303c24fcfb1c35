import HTTPTypes
import SallyportConfig
import Testing

@testable import SallyportConnector

@Suite struct BackendExchangeTests {
    @Test func withoutAHandlerARequestIsSentOnce() {
        var exchange = BackendExchange(hasBody: false, upgrading: false, handlerAttempts: nil)
        #expect(exchange.start() == .send(fresh: false))
        #expect(!exchange.retryPossible)
        #expect(exchange.sent(.answered) == .finish)
    }

    @Test func aChallengeIsAnsweredUpToTheHandlersAttempts() {
        var exchange = BackendExchange(hasBody: false, upgrading: false, handlerAttempts: 2)
        #expect(exchange.start() == .prepare(attempt: 1))
        #expect(exchange.retryPossible)
        #expect(exchange.prepared() == .send(fresh: false))
        #expect(exchange.sent(.retryRequested) == .prepare(attempt: 2))
        #expect(!exchange.retryPossible, "the last attempt's answer is delivered")
        #expect(exchange.sent(.answered) == .finish)
    }

    @Test func aBodyOrAnUpgradeIsNeverSentTwice() {
        for (hasBody, upgrading) in [(true, false), (false, true)] {
            var exchange = BackendExchange(hasBody: hasBody, upgrading: upgrading, handlerAttempts: 3)
            #expect(!exchange.retryPossible)
            #expect(exchange.sent(.failedBeforeAnswer(timedOut: false, reused: true)) == .fail(timedOut: false))
        }
    }

    @Test func aReusedConnectionThatClosedUnansweredIsReplacedOncePerAttempt() {
        var plain = BackendExchange(hasBody: false, upgrading: false, handlerAttempts: nil)
        #expect(plain.sent(.failedBeforeAnswer(timedOut: false, reused: true)) == .send(fresh: true))
        #expect(plain.sent(.failedBeforeAnswer(timedOut: false, reused: false)) == .fail(timedOut: false))

        var handled = BackendExchange(hasBody: false, upgrading: false, handlerAttempts: 2)
        #expect(handled.sent(.failedBeforeAnswer(timedOut: false, reused: true)) == .prepare(attempt: 1))
        #expect(handled.prepared() == .send(fresh: true))
        #expect(handled.sent(.retryRequested) == .prepare(attempt: 2))
        #expect(handled.prepared() == .send(fresh: false), "the next attempt may use the pool again")
        #expect(handled.sent(.failedBeforeAnswer(timedOut: false, reused: true)) == .prepare(attempt: 2))
        #expect(handled.prepared() == .send(fresh: true))
        #expect(handled.sent(.failedBeforeAnswer(timedOut: false, reused: true)) == .fail(timedOut: false))
    }

    @Test func aTimeoutOrANewConnectionIsNotRetried() {
        var exchange = BackendExchange(hasBody: false, upgrading: false, handlerAttempts: nil)
        #expect(exchange.sent(.failedBeforeAnswer(timedOut: true, reused: true)) == .fail(timedOut: true))
    }
}

@Suite struct BackendHeadTests {
    static let app = ConnectorApp(name: "wiki", internalURL: try! InternalURL(parsing: "http://10.1.2.3/"))

    /// Before, a body without Content-Length (chunked HTTP/1.1, HTTP/2) left no trace in the head: the kcd
    /// handler with `on401` took it for body-less, sent no token, and the user got the backend's 401.
    @Test func aBodyWithoutLengthIsSentChunkedSoHandlersSeeIt() {
        let head = HTTPRequest(method: .post, scheme: "https", authority: "wiki.example.com", path: "/upload")
        let streamed = BackendHead.make(head, app: Self.app, upgrade: nil, hasBody: true)
        #expect(streamed.headerFields[.transferEncoding] == "chunked")
        let empty = BackendHead.make(head, app: Self.app, upgrade: nil, hasBody: false)
        #expect(empty.headerFields[.transferEncoding] == nil)
        var sized = head
        sized.headerFields[.contentLength] = "5"
        #expect(BackendHead.make(sized, app: Self.app, upgrade: nil, hasBody: true).headerFields[.transferEncoding] == nil)
    }

    @Test func connectionBasedAuthenticationIsRecognised() {
        var request = HTTPRequest(method: .get, scheme: "http", authority: "b", path: "/")
        #expect(!BackendHead.carriesConnectionAuthentication(request))
        for value in ["NTLM TlRMTVNTUAABAAAA", "Negotiate YIIB", "negotiate abc"] {
            request.headerFields[.authorization] = value
            #expect(BackendHead.carriesConnectionAuthentication(request), "\(value)")
        }
        for value in ["Bearer x", "Basic YTpi", "NTLMish x"] {
            request.headerFields[.authorization] = value
            #expect(!BackendHead.carriesConnectionAuthentication(request), "\(value)")
        }
    }
}

@Suite struct BackendPoolStateTests {
    final class Conn {}
    typealias State = BackendPoolState<Conn>

    static func key(_ host: String, affinity: String? = nil) -> BackendKey {
        BackendKey(scheme: "http", host: host, port: 80, tls: nil, affinity: affinity)
    }

    @Test func reusesTheNewestAndForgetsClosedConnectionsAndEmptyKeys() {
        var state = State(maxIdlePerKey: 4, maxIdleTotal: 100, idleTimeout: .seconds(60))
        let now = ContinuousClock.now
        let (a, b) = (Conn(), Conn())
        #expect(state.release(a, key: Self.key("x"), now: now).isEmpty)
        #expect(state.release(b, key: Self.key("x"), now: now + .seconds(1)).isEmpty)
        #expect(state.lease(Self.key("x"), now: now + .seconds(2)).reuse === b)
        state.closed(a)
        #expect(state.idleCount == 0)
        #expect(state.idle.isEmpty, "a key with no connection left is dropped")
        #expect(state.lease(Self.key("x"), now: now).reuse == nil)
    }

    /// A connection on the asking task's event loop is reused before a newer one elsewhere.
    @Test func aNearConnectionIsReusedFirst() {
        var state = State(maxIdlePerKey: 16, maxIdleTotal: 100, idleTimeout: .seconds(60))
        let now = ContinuousClock.now
        let (near, other, newest) = (Conn(), Conn(), Conn())
        for (offset, connection) in [near, other, newest].enumerated() {
            #expect(state.release(connection, key: Self.key("x"), now: now + .seconds(offset)).isEmpty)
        }
        #expect(state.lease(Self.key("x"), now: now + .seconds(5)) { $0 === near }.reuse === near)
        #expect(state.lease(Self.key("x"), now: now + .seconds(5)) { $0 === near }.reuse === newest, "none near: the newest")
        #expect(state.idleCount == 1)
        // An expired near connection is not handed out, and the expired are returned to close.
        let (reuse, close) = state.lease(Self.key("x"), now: now + .seconds(120)) { $0 === other }
        #expect(reuse == nil)
        #expect(close.count == 1 && close[0] === other)
        #expect(state.idleCount == 0)
    }

    /// Before, a key bound to one user (KCD, NTLM) stayed in the pool for good, with its closed connections.
    @Test func perUserKeysVanishWithTheirConnections() {
        var state = State(maxIdlePerKey: 4, maxIdleTotal: 100, idleTimeout: .seconds(60))
        let now = ContinuousClock.now
        var connections: [Conn] = []
        for user in 0..<50 {
            let connection = Conn()
            connections.append(connection)
            _ = state.release(connection, key: Self.key("x", affinity: "user\(user)"), now: now)
        }
        #expect(state.idle.count == 50)
        for connection in connections { state.closed(connection) }
        #expect(state.idle.isEmpty)
        #expect(state.idleCount == 0)
    }

    @Test func capsPerKeyAndInAllEvictingTheLongestIdle() {
        var state = State(maxIdlePerKey: 2, maxIdleTotal: 3, idleTimeout: .seconds(60))
        let now = ContinuousClock.now
        let (a, b, c, d, e) = (Conn(), Conn(), Conn(), Conn(), Conn())
        #expect(state.release(a, key: Self.key("x"), now: now).isEmpty)
        #expect(state.release(b, key: Self.key("x"), now: now + .seconds(1)).isEmpty)
        #expect(state.release(c, key: Self.key("x"), now: now + .seconds(2)).first === c, "a full key refuses")
        #expect(state.release(d, key: Self.key("y"), now: now + .seconds(3)).isEmpty)
        let evicted = state.release(e, key: Self.key("z"), now: now + .seconds(4))
        #expect(evicted.count == 1 && evicted.first === a, "the pool is full: the connection idle longest goes")
        #expect(state.idleCount == 3)
    }

    @Test func connectionsIdleTooLongAreNeverLentAndAreSwept() {
        var state = State(maxIdlePerKey: 4, maxIdleTotal: 100, idleTimeout: .seconds(10))
        let now = ContinuousClock.now
        let (old, fresh, other) = (Conn(), Conn(), Conn())
        _ = state.release(old, key: Self.key("x"), now: now)
        _ = state.release(fresh, key: Self.key("x"), now: now + .seconds(8))
        _ = state.release(other, key: Self.key("y"), now: now)
        let swept = state.expire(now: now + .seconds(11))
        #expect(swept.count == 2 && swept.contains { $0 === old } && swept.contains { $0 === other })
        #expect(state.idleCount == 1)
        let (reuse, close) = state.lease(Self.key("x"), now: now + .seconds(19))
        #expect(reuse == nil)
        #expect(close.first === fresh)
        #expect(state.idle.isEmpty)
    }
}
