import SallyportHTTP
import Testing

/// An exchange's progress and its response-head deadline, without sockets.
@Suite struct ExchangeProgressTests {
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
}
