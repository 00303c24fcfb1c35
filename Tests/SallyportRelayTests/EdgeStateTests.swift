import HTTPTypes
import NIOCore
import NIOEmbedded
import NIOHTTP2
import Testing

@testable import SallyportRelay

@Suite struct EdgeConnectionStateTests {
    typealias State = EdgeConnectionState

    @Test func timersFollowTheRequestCycle() {
        var state = State()
        #expect(state.started() == .arm(.idle))
        #expect(state.bytesArrived() == .arm(.headerRead))
        #expect(state.bytesArrived() == .none, "the header-read timer runs from the first byte, not the last")
        #expect(state.requestHeadArrived() == .cancelTimer)
        #expect(state.bytesArrived() == .none, "body bytes start no timer")
        #expect(state.responseHead(.ok) == .write)
        #expect(state.responseEnd() == .writeThenArm(.idle))
        #expect(state.phase == .idle)
    }

    @Test func anUpgradeStopsTheTimers() {
        var state = State()
        _ = state.bytesArrived()
        _ = state.requestHeadArrived()
        #expect(state.responseHead(.switchingProtocols) == .writeAndCancelTimer)
        #expect(state.responseEnd() == .write)
        #expect(state.bytesArrived() == .none)
        #expect(state.quiesce() == .none, "an upgraded connection ends with its peer")
    }

    @Test func quiescingClosesIdleConnectionsAndFinishesRequests() {
        var idle = State()
        _ = idle.bytesArrived()
        _ = idle.requestHeadArrived()
        _ = idle.responseEnd()
        #expect(idle.quiesce() == .close)

        var busy = State()
        _ = busy.bytesArrived()
        _ = busy.requestHeadArrived()
        #expect(busy.quiesce() == .none)
        #expect(busy.responseHead(.continue) == .write, "an interim response does not end the connection")
        #expect(busy.responseHead(.ok) == .writeWithConnectionClose)
        #expect(busy.responseEnd() == .writeThenClose)

        // A request head still arriving is answered, not cut off.
        var reading = State()
        _ = reading.bytesArrived()
        #expect(reading.quiesce() == .none)
        #expect(reading.requestHeadArrived() == .cancelTimer)
        #expect(reading.responseEnd() == .writeThenClose)
    }

    /// A connection accepted just before shutdown has not sent its request yet: it may, within the
    /// header-read timeout, and is then closed.
    @Test func aFreshConnectionMaySendOneRequestWhileQuiescing() {
        var state = State()
        _ = state.started()
        #expect(state.quiesce() == .arm(.headerRead))
        #expect(state.quiesce() == .none, "a second event changes nothing")
        #expect(state.bytesArrived() == .arm(.headerRead))
        #expect(state.requestHeadArrived() == .cancelTimer)
        #expect(state.responseHead(.ok) == .writeWithConnectionClose)
        #expect(state.responseEnd() == .writeThenClose)
    }
}

@Suite struct ChannelTrackerTests {
    /// Records quiesce events.
    final class QuiesceRecorder: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = NIOAny
        var events = 0
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if event is ChannelShouldQuiesceEvent { events += 1 }
        }
    }

    /// Before, a connection whose HTTP handlers were added after `quiesce()` (it was in its TLS handshake, or
    /// accepted a moment later) never heard of the shutdown.
    @Test func aConnectionCompletedAfterQuiesceStillGetsTheEvent() throws {
        let tracker = ChannelTracker()
        let early = EmbeddedChannel()
        let earlyRecorder = QuiesceRecorder()
        try early.pipeline.syncOperations.addHandler(earlyRecorder)
        #expect(tracker.add(early))
        let late = EmbeddedChannel()
        #expect(tracker.add(late))

        tracker.quiesce()
        #expect(earlyRecorder.events == 1)

        // The late channel's handlers arrive only now, as after a TLS handshake.
        let lateRecorder = QuiesceRecorder()
        try late.pipeline.syncOperations.addHandler(lateRecorder)
        tracker.joinQuiescing(late)
        late.embeddedEventLoop.run()
        #expect(lateRecorder.events == 1)

        // Before shutdown, joining does nothing.
        let calm = ChannelTracker()
        let other = EmbeddedChannel()
        let otherRecorder = QuiesceRecorder()
        try other.pipeline.syncOperations.addHandler(otherRecorder)
        #expect(calm.add(other))
        calm.joinQuiescing(other)
        other.embeddedEventLoop.run()
        #expect(otherRecorder.events == 0)
        _ = try? early.finish()
        _ = try? late.finish()
        _ = try? other.finish()
    }
}

@Suite struct ResetBudgetTests {
    @Test func countsWithinTheWindowOnly() {
        var limiter = ResetRateLimiter(maximum: 3, window: .seconds(10))
        let start = ContinuousClock.now
        var verdicts: [Bool] = []
        for offset in [0.0, 1, 2, 3, 12.5] { verdicts.append(limiter.record(at: start + .seconds(offset))) }
        // A fourth within 10 s is one too many; at 12.5 s the first three have left the window.
        #expect(verdicts == [false, false, false, true, false])
    }

    /// Rapid reset stays covered: a client that keeps resetting streams in progress loses its connection.
    @Test func streamsResetInProgressCloseTheConnection() throws {
        let connection = EmbeddedChannel()
        try connection.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let budget = ConnectionResetBudget(connection: connection)
        let stream = EmbeddedChannel(handler: StreamResetWatcher(budget: budget), loop: connection.embeddedEventLoop)
        for index in 0..<200 {
            stream.pipeline.fireErrorCaught(NIOHTTP2Errors.streamClosed(streamID: HTTP2StreamID(2 * index + 1), errorCode: .cancel))
        }
        #expect(connection.isActive, "200 in 10 s are allowed")
        stream.pipeline.fireErrorCaught(NIOHTTP2Errors.streamClosed(streamID: 401, errorCode: .cancel))
        connection.embeddedEventLoop.run()
        #expect(!connection.isActive)
        let goAway = try connection.readOutbound(as: HTTP2Frame.self)
        guard case .goAway(_, .enhanceYourCalm, _)? = goAway?.payload else {
            Issue.record("expected GOAWAY ENHANCE_YOUR_CALM, got \(String(describing: goAway))")
            return
        }
        // Other errors are not resets.
        let calm = EmbeddedChannel()
        try calm.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let calmStream = EmbeddedChannel(handler: StreamResetWatcher(budget: ConnectionResetBudget(connection: calm)), loop: calm.embeddedEventLoop)
        for _ in 0..<300 { calmStream.pipeline.fireErrorCaught(ChannelError.ioOnClosedChannel) }
        #expect(calm.isActive)
    }

    @Test func connectionsOverALimitAreTurnedAway() async throws {
        func channel(_ ip: String) throws -> EmbeddedChannel {
            let channel = EmbeddedChannel()
            try channel.connect(to: SocketAddress(ipAddress: ip, port: 40000)).wait()
            return channel
        }
        let tracker = ChannelTracker(maxTotal: 3, maxPerClient: 2)
        let a1 = try channel("198.51.100.1"), a2 = try channel("198.51.100.1"), a3 = try channel("198.51.100.1")
        #expect(tracker.add(a1) && tracker.add(a2))
        #expect(!tracker.add(a3), "a third from one client")
        let b1 = try channel("198.51.100.2"), b2 = try channel("198.51.100.2")
        #expect(tracker.add(b1))
        #expect(!tracker.add(b2), "a fourth in all")
        _ = try? a1.finish()
        a1.embeddedEventLoop.run()
        #expect(tracker.add(a3), "a slot is free again once a connection closes")
        #expect(tracker.count == 3)
        for channel in [a2, a3, b1, b2] { _ = try? channel.finish() }
    }

    @Test func ipv6ClientsCountByTheir64() throws {
        func key(_ ip: String) throws -> String { ChannelTracker.clientKey(try SocketAddress(ipAddress: ip, port: 1)) }
        #expect(try key("2001:db8:1:2::1") == key("2001:db8:1:2:ffff::9"))
        #expect(try key("2001:db8:1:2::1") != key("2001:db8:1:3::1"))
        #expect(try key("::ffff:198.51.100.7") == "198.51.100.7", "an IPv4 client on a dual-stack socket")
        #expect(try key("198.51.100.7") == "198.51.100.7")
    }

    @Test func absoluteFormTargetsRouteByTheirOwnHost() {
        #expect(AbsoluteFormRewriter.originForm(of: "http://evil.example/a/b?c=d")! == ("evil.example", "/a/b?c=d"))
        #expect(AbsoluteFormRewriter.originForm(of: "HTTPS://App.Example:8443")! == ("App.Example:8443", "/"))
        #expect(AbsoluteFormRewriter.originForm(of: "http://app.example@evil.example/") == nil, "user info")
        #expect(AbsoluteFormRewriter.originForm(of: "http:///nohost") == nil)
        #expect(AbsoluteFormRewriter.isAbsoluteForm("/origin") == false)
    }
}
