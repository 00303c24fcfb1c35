import HTTPTypes
import NIOCore
import NIOEmbedded
import NIOHTTPTypes
import Synchronization
import Testing

@testable import SallyportConnector

/// The backend connection's phases, without sockets: what spoils it, and which silence limit applies.
@Suite struct BackendConnectionStateTests {
    static let ok = HTTPResponsePart.head(HTTPResponse(status: .ok))
    static let body = HTTPResponsePart.body(ByteBuffer(string: "x"))

    @Test func aCleanExchangeReturnsItBetweenExchanges() {
        var state = BackendConnectionState()
        #expect(state.silence == .pooled)
        state.requestHeadWritten()
        #expect(state.silence == .exchange, "an upload's silence is bounded")
        state.requestEndWritten()
        #expect(state.silence == .awaitingHead, "the response timeout governs the wait for the head")
        #expect(state.received(Self.ok) == .forward)
        #expect(state.silence == .exchange)
        #expect(state.received(Self.body) == .forward)
        #expect(state.received(.end(nil)) == .forward)
        #expect(state.phase == .between && state.silence == .pooled)
    }

    @Test func anythingBetweenExchangesSpoilsIt() {
        for extra in [Self.ok, Self.body, .end(nil)] {
            var state = BackendConnectionState()
            state.requestHeadWritten()
            state.requestEndWritten()
            _ = state.received(Self.ok)
            _ = state.received(.end(nil))
            #expect(state.received(extra) == .close)
            #expect(state.phase == .spoiled)
            #expect(state.received(Self.ok) == .close, "and stays spoiled")
        }
        var failed = BackendConnectionState()
        #expect(failed.failed() == .close, "a decoding error between exchanges (bytes past a 204) spoils it")
    }

    @Test func anEarlyAnswerEndsTheResponseButNotTheExchange() {
        var state = BackendConnectionState()
        state.requestHeadWritten()
        #expect(state.received(HTTPResponsePart.head(HTTPResponse(status: .contentTooLarge))) == .forward)
        #expect(state.received(.end(nil)) == .forward)
        #expect(state.silence == .exchange, "the upload still streams")
        #expect(state.failed() == .close, "nothing may follow the answer's end")
        var finishing = BackendConnectionState()
        finishing.requestHeadWritten()
        _ = finishing.received(Self.ok)
        _ = finishing.received(.end(nil))
        finishing.requestEndWritten()
        #expect(finishing.phase == .between)
    }

    @Test func informationalHeadsAndUpgrades() {
        var state = BackendConnectionState()
        state.requestHeadWritten()
        state.requestEndWritten()
        #expect(state.received(.head(HTTPResponse(status: .continue))) == .forward)
        #expect(state.silence == .awaitingHead, "a 100 is not the answer")
        #expect(state.received(Self.body) == .close, "a body before any head is no HTTP")
        var upgraded = BackendConnectionState()
        upgraded.requestHeadWritten()
        upgraded.requestEndWritten()
        #expect(upgraded.received(.head(HTTPResponse(status: .switchingProtocols))) == .forward)
        #expect(upgraded.received(Self.body) == .forward && upgraded.received(.end(nil)) == .forward && upgraded.received(Self.body) == .forward)
        #expect(upgraded.silence == .exchange)
    }

    @Test func theHandlersCloseASpoiledConnectionAndASilentOne() throws {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        let signals = BackendConnectionSignals(exchangeTimeout: .seconds(2))
        let silence = BackendSilenceHandler(signals: signals)
        try channel.pipeline.syncOperations.addHandler(silence)
        try channel.pipeline.syncOperations.addHandler(BackendConnectionGuard(silence: silence, pooledTimeout: .seconds(60), signals: signals))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeOutbound(HTTPRequestPart.head(HTTPRequest(method: .get, scheme: nil, authority: "a", path: "/")))
        try channel.writeOutbound(HTTPRequestPart.end(nil))
        // Waiting for the head: no silence limit.
        loop.advanceTime(by: .seconds(30))
        #expect(channel.isActive)
        try channel.writeInbound(Self.ok)
        loop.advanceTime(by: .seconds(1))
        try channel.writeInbound(Self.body)
        loop.advanceTime(by: .milliseconds(1999))
        #expect(channel.isActive, "activity restarts the limit")
        loop.advanceTime(by: .milliseconds(2))
        #expect(!channel.isActive, "2 s of silence in the body closes it")
        let closedForSilence = signals.closedForSilence.load(ordering: .relaxed)
        #expect(closedForSilence)

        let second = EmbeddedChannel(loop: loop)
        let quiet = BackendSilenceHandler(signals: BackendConnectionSignals(exchangeTimeout: .seconds(2)))
        try second.pipeline.syncOperations.addHandler(quiet)
        try second.pipeline.syncOperations.addHandler(
            BackendConnectionGuard(silence: quiet, pooledTimeout: .seconds(60), signals: BackendConnectionSignals(exchangeTimeout: .seconds(2)))
        )
        try second.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try second.writeOutbound(HTTPRequestPart.head(HTTPRequest(method: .get, scheme: nil, authority: "a", path: "/")))
        try second.writeOutbound(HTTPRequestPart.end(nil))
        try second.writeInbound(Self.ok)
        try second.writeInbound(HTTPResponsePart.end(nil))
        #expect(second.isActive)
        // A response nobody asked for: the connection closes and nothing reaches the pool's reader.
        let before = try second.readInbound(as: HTTPResponsePart.self)
        _ = try second.readInbound(as: HTTPResponsePart.self)
        #expect(before != nil)
        _ = try? second.writeInbound(Self.ok)
        #expect(!second.isActive)
        #expect(try second.readInbound(as: HTTPResponsePart.self) == nil)
    }
}
