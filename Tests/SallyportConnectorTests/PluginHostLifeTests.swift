@testable import SallyportPluginHost
import Testing

/// A plugin host's life without processes: which host serves, when one that ended starts again, and that
/// nothing starts once the plugin stopped.
@Suite struct PluginHostLifeTests {
    final class Host {}
    typealias Life = PluginHostLife<Host>

    let t0 = ContinuousClock.now

    /// A life whose first host serves since `t0`.
    func serving(_ host: Host) -> Life {
        var life = Life()
        let live = life.started(host, at: self.t0)
        #expect(live)
        return life
    }

    @Test func theFirstRestartAfterAHostThatServedIsAtOnceThenTheBackoffDoublesToThirtySeconds() {
        var host = Host()
        var life = self.serving(host)
        var now = self.t0
        var delays: [Duration] = []
        for _ in 0..<9 {
            now += .seconds(1)
            let ended = life.hostEnded(host, at: now)
            #expect(ended)
            #expect(life.connection == nil)
            guard case .start(let delay) = life.restart() else { Issue.record("no restart"); return }
            delays.append(delay)
            host = Host()
            let live = life.started(host, at: now)
            #expect(live && life.connection === host)
        }
        #expect(delays == [.zero, .milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(30), .seconds(30)])
    }

    @Test func aHostThatServedAMinuteResetsTheBackoff() {
        var host = Host()
        var life = self.serving(host)
        for _ in 0..<3 {
            _ = life.hostEnded(host, at: self.t0 + .seconds(1))
            _ = life.restart()
            host = Host()
            _ = life.started(host, at: self.t0 + .seconds(1))
        }
        _ = life.hostEnded(host, at: self.t0 + .seconds(62))
        let next = life.restart()
        #expect(next == .start(after: .zero))
    }

    @Test func aCrashReportAndTheExitThatFollowsAreOneEnd() {
        let host = Host()
        var life = self.serving(host)
        // The crash is reported on the host's output; its exit comes later (the backtracer finishing).
        let reported = life.hostEnded(host, at: self.t0)
        let exited = life.hostEnded(host, at: self.t0 + .seconds(5))
        let next = life.restart()
        #expect(reported && !exited)
        #expect(next == .start(after: .zero))
        // A host that is no longer the live one ends nothing.
        let newHost = Host()
        let live = life.started(newHost, at: self.t0 + .seconds(5))
        let oldEnded = life.hostEnded(host, at: self.t0 + .seconds(6))
        #expect(live && !oldEnded)
        #expect(life.connection === newHost)
    }

    @Test func aFailedStartIsTriedAgainAfterTheBackoff() {
        let host = Host()
        var life = self.serving(host)
        _ = life.hostEnded(host, at: self.t0)
        let first = life.restart()
        let second = life.startFailed()
        let third = life.startFailed()
        #expect([first, second, third] == [.start(after: .zero), .start(after: .milliseconds(500)), .start(after: .seconds(1))])
        #expect(life.connection == nil)
    }

    @Test func nothingStartsOnceStopped() {
        let host = Host()
        var life = self.serving(host)
        let closed = life.stop()
        #expect(closed === host && life.isStopped)
        let ended = life.hostEnded(host, at: self.t0)
        let restart = life.restart()
        let retry = life.startFailed()
        #expect(!ended && restart == .none && retry == .none)
        // A host that said hello after the stop is not made live (the caller stops it).
        let live = life.started(Host(), at: self.t0)
        #expect(!live && life.connection == nil)
    }

    @Test func stoppedWhileAHostStartsIsStillStopped() {
        let host = Host()
        var life = self.serving(host)
        _ = life.hostEnded(host, at: self.t0)
        _ = life.restart()
        let closed = life.stop()
        let live = life.started(Host(), at: self.t0 + .seconds(1))
        let retry = life.startFailed()
        #expect(closed == nil && !live && retry == .none)
    }
}
