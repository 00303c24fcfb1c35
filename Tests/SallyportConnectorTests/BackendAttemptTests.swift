import HTTPTypes
import NIOCore
import NIOHTTP1
import SallyportHTTP
import SallyportPluginAPI
import SallyportTunnel
import SallyportWire
import Testing

@testable import SallyportConnector

/// One send on one backend connection (``BackendAttempt``), without sockets: what goes into the tunnel, when the
/// connection may be reused, and what the exchange around it hears.
@Suite struct BackendAttemptTests {
    static func sent(reused: Bool = false, inspects: Bool = false, upgrade: String? = nil, connectorAuthenticated: Bool = false) -> BackendAttempt {
        var attempt = BackendAttempt(upgrade: upgrade, reused: reused, inspects: inspects, connectorAuthenticated: connectorAuthenticated)
        _ = attempt.requestEnded()
        return attempt
    }

    @Test func aCleanAnswerLeavesAReusableConnection() {
        var attempt = Self.sent()
        #expect(attempt.progress.requestSent)
        var response = HTTPResponse(status: .ok)
        response.headerFields[TunnelProtocol.Field.app] = "forged"
        response.headerFields[.connection] = "keep-alive"
        guard case .deliver(let head) = attempt.responseHead(response) else {
            Issue.record("expected the head to go into the tunnel")
            return
        }
        #expect(head.headerFields[TunnelProtocol.Field.app] == nil)
        #expect(head.headerFields[.connection] == nil)
        let result5 = attempt.responseBody()
        #expect(result5)
        #expect(attempt.responseEnd(nil) == .deliver(nil))
        #expect(attempt.ending == .complete)
        #expect(attempt.connectionReusable)
        #expect(attempt.outcome == .answered)
    }

    @Test func connectionCloseOrAnAbandonedRequestIsNeverReused() {
        var closing = Self.sent()
        var response = HTTPResponse(status: .ok)
        response.headerFields[.connection] = "close"
        _ = closing.responseHead(response)
        _ = closing.responseEnd(nil)
        #expect(!closing.connectionReusable)

        var abandoned = Self.sent()
        _ = abandoned.responseHead(HTTPResponse(status: .ok))
        abandoned.requestAbandoned()
        _ = abandoned.responseEnd(nil)
        #expect(!abandoned.connectionReusable)
    }

    @Test func informationalHeadsAreNotPassedOn() {
        var attempt = Self.sent()
        #expect(attempt.responseHead(HTTPResponse(status: .continue)) == .ignore)
        #expect(attempt.phase == .sending)
    }

    @Test func nothingBeforeTheHeadMeansNoResponseAndAReusedConnectionMayBeResent() {
        var attempt = Self.sent(reused: true)
        #expect(attempt.connectionEnded(error: nil) == .noResponse)
        #expect(attempt.outcome == .failedBeforeAnswer(timedOut: false, reused: true))
        #expect(attempt.connectionEnded(error: nil) == nil)

        var early = Self.sent()
        let result6 = early.responseBody()
        #expect(!result6)
        #expect(early.ending == .noResponse)
    }

    @Test func bytesThatAreNoHTTPAreUnusableAndNeverSentAgain() {
        var attempt = Self.sent(reused: true)
        guard case .unusable(.backendBadResponse, _)? = attempt.connectionEnded(error: HTTPParserError.invalidVersion) else {
            Issue.record("expected backend-bad-response")
            return
        }
        #expect(attempt.outcome == nil)
    }

    @Test func aCutOffBodyIsTruncated() {
        var attempt = Self.sent()
        _ = attempt.responseHead(HTTPResponse(status: .ok))
        #expect(attempt.connectionEnded(error: nil) == .truncated)
        #expect(attempt.outcome == .answered)
        #expect(!attempt.connectionReusable)
    }

    @Test func aHeadAfterTheDeadlineIsNotTaken() {
        var attempt = Self.sent(reused: true)
        let timedOut = attempt.deadlinePassed()
        #expect(timedOut)
        #expect(attempt.responseHead(HTTPResponse(status: .ok)) == .end)
        #expect(attempt.outcome == .failedBeforeAnswer(timedOut: true, reused: true))
    }

    @Test func theHandlerSeesTheHeadFirstAndMayAskForTheRequestAgain() {
        var attempt = Self.sent(inspects: true)
        let challenge = HTTPResponse(status: .unauthorized)
        #expect(attempt.responseHead(challenge) == .inspect(challenge))
        #expect(attempt.phase == .inspecting)
        let result1 = attempt.responseBody()
        #expect(!result1)
        #expect(attempt.inspected(.retry, challenge) == .ignore)
        let result2 = attempt.responseBody()
        #expect(!result2)
        #expect(attempt.responseEnd(nil) == .end)
        #expect(attempt.ending == .retryRequested)
        #expect(attempt.connectionReusable)
        #expect(attempt.outcome == .retryRequested)
    }

    @Test func aRefusedResponseEndsTheAttemptAndItsConnection() {
        var attempt = Self.sent(inspects: true)
        let refusal = Refusal(status: 502, message: "no", reason: "test")
        _ = attempt.responseHead(HTTPResponse(status: .ok))
        #expect(attempt.inspected(.refuse(refusal), HTTPResponse(status: .ok)) == .end)
        #expect(attempt.ending == .refused(refusal))
        #expect(!attempt.connectionReusable)
        #expect(attempt.outcome == nil)
    }

    @Test func aHeadTooLargeForTheTunnelIsRefusedHereOnce() {
        var attempt = Self.sent()
        var response = HTTPResponse(status: .ok)
        for index in 0..<10_000 { response.headerFields.append(HTTPField(name: HTTPField.Name("X-F\(index)")!, value: "v")) }
        #expect(attempt.responseHead(response) == .end)
        guard case .unusable(.backendHeadTooLarge, _)? = attempt.ending else {
            Issue.record("expected backend-head-too-large")
            return
        }
    }

    @Test func theConnectorsOwnAuthenticationDoesNotReachTheUser() {
        var attempt = Self.sent(connectorAuthenticated: true)
        var response = HTTPResponse(status: .ok)
        response.headerFields[.wwwAuthenticate] = "Negotiate abc"
        guard case .deliver(let head) = attempt.responseHead(response) else {
            Issue.record("expected a head")
            return
        }
        #expect(head.headerFields[.wwwAuthenticate] == nil)
    }

    @Test func aSwitchGoesOnUntilTheBackendCloses() {
        var attempt = BackendAttempt(upgrade: "websocket", reused: false, inspects: false, connectorAuthenticated: false)
        let result3 = attempt.requestEnded()
        #expect(result3)
        #expect(!attempt.requestComplete)
        guard case .upgrade(let head) = attempt.responseHead(HTTPResponse(status: .switchingProtocols)) else {
            Issue.record("expected a switch")
            return
        }
        #expect(head.status == .ok)
        #expect(head.headerFields[TunnelProtocol.Field.upgraded] == "websocket")
        let result4 = attempt.responseBody()
        #expect(result4)
        #expect(attempt.responseEnd(nil) == .ignore)
        #expect(attempt.connectionEnded(error: nil) == .upgradeEnded)
        #expect(!attempt.connectionReusable)
    }
}
