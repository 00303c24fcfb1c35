import NIOCore
import NIOEmbedded
import SallyportHTTP
import Testing

/// An exchange's progress and its response-head deadline, without sockets.
@Suite struct ExchangeProgressTests {
    static func connected(_ loop: EmbeddedEventLoop) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    @Test func aHeadBeforeTheDeadlineMeetsItAndTheDeadlineThenChangesNothing() {
        var progress = ExchangeProgress()
        let starts = progress.requestEnded()
        let met = progress.headArrived()
        let passed = progress.deadlinePassed()
        #expect(starts && met && !passed)
        #expect(progress == { var p = ExchangeProgress(); _ = p.requestEnded(); _ = p.headArrived(); return p }())
        #expect(progress.answer == .answered && progress.requestSent)
    }

    @Test func pastTheDeadlineALateHeadIsNotTaken() {
        var progress = ExchangeProgress()
        _ = progress.requestEnded()
        let passed = progress.deadlinePassed()
        let late = progress.headArrived()
        #expect(passed && !late)
        #expect(progress.answer == .timedOut)
    }

    @Test func anEarlyHeadMeetsTheDeadlineForGood() {
        // A 413 before the upload ended: the request's end starts no deadline.
        var progress = ExchangeProgress()
        let met = progress.headArrived()
        let starts = progress.requestEnded()
        #expect(met && !starts)
        #expect(progress.requestSent && progress.answer == .answered)
    }

    @Test func theClockClosesTheChannelOnlyWhenTheDeadlinePasses() throws {
        let loop = EmbeddedEventLoop()
        let channel = try Self.connected(loop)
        let clock = ExchangeClock(timeout: .seconds(2), channel: channel)
        // No deadline while the request is still being sent.
        loop.advanceTime(by: .seconds(10))
        #expect(channel.isActive && !clock.timedOut)
        clock.requestEnded()
        loop.advanceTime(by: .milliseconds(1999))
        #expect(channel.isActive && !clock.timedOut)
        loop.advanceTime(by: .milliseconds(1))
        #expect(!channel.isActive && clock.timedOut && !clock.answered)
        #expect(!clock.headArrived())
    }

    @Test func aHeadInTimeDisarmsTheClock() throws {
        let loop = EmbeddedEventLoop()
        let channel = try Self.connected(loop)
        let clock = ExchangeClock(timeout: .seconds(2), channel: channel)
        clock.requestEnded()
        loop.advanceTime(by: .seconds(1))
        #expect(clock.headArrived())
        loop.advanceTime(by: .seconds(10))
        #expect(channel.isActive && clock.answered && !clock.timedOut)
        _ = try channel.finish()
    }

    @Test func aFinishedExchangeHasNoDeadline() throws {
        let loop = EmbeddedEventLoop()
        let channel = try Self.connected(loop)
        let clock = ExchangeClock(timeout: .seconds(2), channel: channel)
        clock.requestEnded()
        clock.finished()
        loop.advanceTime(by: .seconds(10))
        #expect(channel.isActive && !clock.timedOut)
        _ = try channel.finish()
    }
}
