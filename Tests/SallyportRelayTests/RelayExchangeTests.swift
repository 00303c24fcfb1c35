import HTTPTypes
import NIOCore
import NIOHTTPTypes
import SallyportHTTP
import SallyportTunnel
import SallyportWire
import Testing

@testable import SallyportRelay

/// One public request's life at the relay (``RelayExchange``), without channels: what goes to the tunnel, what
/// goes to the user, and when a request may go to another connector.
@Suite struct RelayExchangeTests {
    static func body(_ count: Int) -> ByteBuffer { ByteBuffer(repeating: 0x61, count: count) }

    /// A request admitted and sent on a stream of connection 1.
    static func forwarded(_ method: HTTPRequest.Method = .get, isHTTP1: Bool = true, parts: [HTTPRequestPart] = [.end(nil)]) -> RelayExchange {
        var exchange = RelayExchange(method: method, isHTTP1: isHTTP1, asksToClose: false)
        for part in parts { #expect(exchange.received(part) == .hold) }
        exchange.admitted(upgrading: false, closeAfter: false)
        exchange.connecting(to: 1)
        _ = exchange.streamOpened()
        return exchange
    }

    @Test func aGetGoesOutWholeAndItsAnswerComesBack() {
        var exchange = RelayExchange(method: .get, isHTTP1: true, asksToClose: false)
        #expect(exchange.phase == .deciding)
        #expect(!exchange.wantsRequestBytes)
        #expect(exchange.received(.end(nil)) == .hold)
        exchange.admitted(upgrading: false, closeAfter: false)
        exchange.connecting(to: 7)
        #expect(exchange.phase == .connecting)
        let (parts, sent) = exchange.streamOpened()
        #expect(parts == [.end(nil)])
        #expect(sent)
        #expect(exchange.progress.requestSent)
        var response = HTTPResponse(status: .ok)
        response.headerFields[.contentLength] = "3"
        guard case .send(let head) = exchange.responseHead(response, setCookies: [], upgradeProtocol: nil) else {
            Issue.record("the head should go to the user")
            return
        }
        #expect(head.status == .ok)
        #expect(exchange.responseBody(Self.body(3)) == .send(Self.body(3)))
        #expect(!exchange.isComplete)
        #expect(exchange.responseEnd(nil) == .send(nil))
        #expect(exchange.isComplete)
        #expect(exchange.status == 200)
        #expect(exchange.bytesOut == 3)
        #expect(!exchange.closesConnection)
        #expect(exchange.streamClosed(.lost) == .none)
    }

    @Test func aBodyHeldWhileDecidingGoesOutAfterTheHeadAndRequestTrailersNeverCross() {
        var trailers = HTTPFields()
        trailers[TunnelProtocol.Field.identity] = "forged"
        var exchange = RelayExchange(method: .post, isHTTP1: true, asksToClose: false)
        #expect(exchange.received(.body(Self.body(10))) == .hold)
        exchange.admitted(upgrading: false, closeAfter: false)
        exchange.connecting(to: 1)
        let (parts, sent) = exchange.streamOpened()
        #expect(parts == [.body(Self.body(10))])
        #expect(!sent)
        #expect(exchange.wantsRequestBytes)
        #expect(exchange.received(.body(Self.body(5))) == .send(.body(Self.body(5))))
        #expect(exchange.received(.end(trailers)) == .send(.end(nil)))
        #expect(exchange.progress.requestSent)
        #expect(!exchange.wantsRequestBytes)
        #expect(exchange.bytesIn == 15)
    }

    @Test func aLostGetIsSentAgainWithItsBodyButALostPostIsNot() {
        var get = Self.forwarded(.get)
        #expect(get.streamClosed(.lost) == .retry)
        get.connecting(to: 2)
        #expect(get.streamOpened().parts == [.end(nil)])
        #expect(get.tried == [1, 2])

        var post = Self.forwarded(.post, parts: [.body(Self.body(4)), .end(nil)])
        #expect(post.streamClosed(.lost) == .answer(.lost))
        // Refused streams were never processed: a POST goes again, with the body it had sent.
        var refused = Self.forwarded(.post, parts: [.body(Self.body(4)), .end(nil)])
        #expect(refused.streamClosed(.refused) == .retry)
        refused.connecting(to: 2)
        #expect(refused.streamOpened().parts == [.body(Self.body(4)), .end(nil)])
    }

    @Test func aBodyPastTheReplayLimitIsSentOnce() {
        var exchange = Self.forwarded(.put, parts: [])
        _ = exchange.received(.body(Self.body(RelayExchange.replayLimit + 1)))
        #expect(!exchange.isReplayable)
        #expect(exchange.streamClosed(.refused) == .answer(.refused))
    }

    @Test func theConnectorsNotForwardedAnswerGoesToAnotherConnectorAndIsLogged() {
        var exchange = Self.forwarded()
        var response = HTTPResponse(status: .badGateway)
        response.headerFields[TunnelProtocol.Field.error] = ConnectorErrorReason.backendRefused.rawValue
        #expect(
            exchange.responseHead(response, setCookies: [], upgradeProtocol: nil)
                == .failed(.notForwarded(status: .badGateway, reason: .backendRefused))
        )
        #expect(exchange.attemptFailed(.notForwarded(status: .badGateway, reason: .backendRefused)) == .retry)
        #expect(exchange.reason == "backend-refused")
        // A reason that says the backend may have the request is passed on to the user.
        var timedOut = Self.forwarded()
        response.headerFields[TunnelProtocol.Field.error] = ConnectorErrorReason.backendTimeout.rawValue
        guard case .send(let head) = timedOut.responseHead(response, setCookies: [], upgradeProtocol: nil) else {
            Issue.record("a backend timeout is the user's answer")
            return
        }
        #expect(head.headerFields[TunnelProtocol.Field.error] == nil)
    }

    @Test func aHeadAfterTheDeadlineIsNotTakenAndTheRequestIsNotSentAgain() {
        var exchange = Self.forwarded()
        let first = exchange.deadlinePassed()
        let second = exchange.deadlinePassed()
        #expect(first)
        #expect(!second)
        #expect(exchange.responseHead(HTTPResponse(status: .ok), setCookies: [], upgradeProtocol: nil) == .failed(.timedOut))
        #expect(exchange.streamClosed(.lost) == .answer(.timedOut))
    }

    @Test func noRequestIsTriedOnMoreThanThreeConnections() {
        var exchange = Self.forwarded()
        for connection in 2...3 {
            #expect(exchange.streamClosed(.refused) == .retry)
            exchange.connecting(to: UInt64(connection))
            _ = exchange.streamOpened()
        }
        #expect(exchange.streamClosed(.refused) == .answer(.refused))
    }

    @Test func aUserWhoLeavesBeforeTheAnswerEndsTheAttemptForGood() {
        var exchange = Self.forwarded(.post, parts: [.body(Self.body(1))])
        exchange.userClosed()
        #expect(exchange.streamClosed(.lost) == .abandon)
        #expect(exchange.phase == .finished)
    }

    @Test func theBackendCannotSetTheRelaysCookiesAndTheRelaysOwnAreAdded() {
        var exchange = Self.forwarded()
        var response = HTTPResponse(status: .ok)
        response.headerFields.append(HTTPField(name: .setCookie, value: "\(RelayNamespace.cookiePrefix)session=forged; Path=/"))
        response.headerFields.append(HTTPField(name: .setCookie, value: "app=1"))
        response.headerFields[TunnelProtocol.Field.app] = "wiki"
        guard case .send(let head) = exchange.responseHead(response, setCookies: ["\(RelayNamespace.cookiePrefix)s=1"], upgradeProtocol: nil) else {
            Issue.record("expected a head")
            return
        }
        #expect(head.headerFields[values: .setCookie] == ["app=1", "\(RelayNamespace.cookiePrefix)s=1"])
        #expect(head.headerFields[TunnelProtocol.Field.app] == nil)
    }

    @Test func onHTTP2TheEndGoesWithTheLastBytesOfAContentLengthBody() {
        var exchange = Self.forwarded(isHTTP1: false)
        var response = HTTPResponse(status: .ok)
        response.headerFields[.contentLength] = "5"
        _ = exchange.responseHead(response, setCookies: [], upgradeProtocol: nil)
        #expect(exchange.responseBody(Self.body(2)) == .send(Self.body(2)))
        #expect(exchange.responseBody(Self.body(3)) == .sendWithEnd(Self.body(3)))
        #expect(exchange.responseEnd(nil) == .alreadySent)
        #expect(exchange.isComplete)
    }

    @Test func aResponseCutOffPartWayClosesTheConnectionAndSaysWhy() {
        var exchange = Self.forwarded()
        _ = exchange.responseHead(HTTPResponse(status: .ok), setCookies: [], upgradeProtocol: nil)
        _ = exchange.responseBody(Self.body(1))
        #expect(exchange.streamClosed(.lost) == .truncated)
        #expect(exchange.reason == "response-incomplete")
        #expect(exchange.closesConnection)
    }

    @Test func anAnswerBeforeTheRequestEndedClosesTheHTTP1Connection() {
        var exchange = Self.forwarded(.post, parts: [.body(Self.body(1))])
        _ = exchange.responseHead(HTTPResponse(status: .contentTooLarge), setCookies: [], upgradeProtocol: nil)
        #expect(exchange.responseEnd(nil) == .send(nil))
        #expect(exchange.closesConnection)
        #expect(!exchange.isComplete)
        #expect(exchange.received(.end(nil)) == .send(.end(nil)))
        #expect(exchange.isComplete)
    }

    @Test func aWebSocketHandshakeSwitchesToBytesBothWays() {
        var exchange = RelayExchange(method: .get, isHTTP1: true, asksToClose: false)
        _ = exchange.received(.end(nil))
        exchange.admitted(upgrading: true, closeAfter: false)
        exchange.connecting(to: 1)
        let (parts, sent) = exchange.streamOpened()
        #expect(parts.isEmpty)
        #expect(sent)
        #expect(exchange.wantsRequestBytes)
        var response = HTTPResponse(status: .ok)
        response.headerFields[TunnelProtocol.Field.upgraded] = "1"
        response.headerFields[.connection] = "keep-alive"
        guard case .upgrade(let head) = exchange.responseHead(response, setCookies: [], upgradeProtocol: "websocket") else {
            Issue.record("expected a switch")
            return
        }
        #expect(head.status == .switchingProtocols)
        #expect(head.headerFields[.upgrade] == "websocket")
        #expect(head.headerFields[.connection] == "Upgrade")
        #expect(head.headerFields[TunnelProtocol.Field.upgraded] == nil)
        #expect(exchange.received(.body(Self.body(2))) == .send(.body(Self.body(2))))
        #expect(exchange.responseBody(Self.body(2)) == .send(Self.body(2)))
        #expect(!exchange.isReplayable)
        #expect(exchange.responseEnd(HTTPFields()) == .send(nil))
        #expect(exchange.isComplete)
        #expect(exchange.closesConnection)
    }

    @Test func anAnsweredRequestDropsWhatFollowsUntilItsEnd() {
        var exchange = RelayExchange(method: .post, isHTTP1: true, asksToClose: false)
        exchange.answerLocally()
        #expect(exchange.wantsRequestBytes)
        #expect(exchange.received(.body(Self.body(9))) == .drop)
        #expect(exchange.received(.end(nil)) == .ended)
        #expect(!exchange.wantsRequestBytes)
    }
}
