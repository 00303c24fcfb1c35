import HTTPTypes
import NIOHTTP2
import SallyportConfig
import SallyportHTTP
import Synchronization
import SallyportWire
import Testing

@testable import SallyportRelay

/// A tunnel connection without a socket: what the registry and the choice look at.
final class FakeTunnel: TunnelCandidate {
    let id: UInt64
    let group: String
    private let state: Mutex<(applied: UInt64, draining: Bool, active: Int)>
    let suspect: Bool
    let connectorID: String
    let recentLatency: Double
    let loop: ObjectIdentifier

    /// Stand-ins for event loops: only their identity counts.
    final class Loop: Sendable {}
    static let loops = [Loop(), Loop()]

    init(
        _ id: UInt64, group: String = "default", applied: UInt64 = 0, draining: Bool = false, active: Int = 0, suspect: Bool = false,
        connector: String? = nil, latency: Double = 0, loop: Int = 0
    ) {
        self.id = id
        self.loop = ObjectIdentifier(Self.loops[loop])
        self.recentLatency = latency
        self.connectorID = connector ?? "c\(id)"
        self.group = group
        self.state = Mutex((applied, draining, active))
        self.suspect = suspect
    }

    var appliedGeneration: UInt64 { self.state.withLock { $0.applied } }
    var draining: Bool { self.state.withLock { $0.draining } }
    var activeRequests: Int { self.state.withLock { $0.active } }
    func markApplied(_ generation: UInt64) { self.state.withLock { $0.applied = max($0.applied, generation) } }
}

@Suite struct TunnelChoiceTests {
    typealias Version = AppCatalog.AppVersion

    func chosen(_ outcome: TunnelChoice.Outcome<FakeTunnel>) -> UInt64? {
        if case .chosen(let tunnel) = outcome { return tunnel.id }
        return nil
    }

    @Test func prefersTheNewestVersionThenTheFewestRequests() {
        let tunnels = [FakeTunnel(1, applied: 5, active: 0), FakeTunnel(2, applied: 6, active: 3), FakeTunnel(3, applied: 6, active: 1)]
        #expect(chosen(TunnelChoice.choose(among: tunnels, app: Version(changed: 6, introduced: 1), excluding: [], start: 0)) == 3)
        // All have the newest: the least loaded.
        #expect(chosen(TunnelChoice.choose(among: tunnels, app: Version(changed: 5, introduced: 1), excluding: [], start: 0)) == 1)
        #expect(chosen(TunnelChoice.choose(among: tunnels, app: Version(changed: 6, introduced: 1), excluding: [3], start: 0)) == 2)
    }

    /// Before, between an edit and the first acknowledgement, every request of the app got 503.
    @Test func anEarlierVersionKeepsServingUntilTheNewOneIsApplied() {
        let tunnels = [FakeTunnel(1, applied: 4), FakeTunnel(2, applied: 4, active: 2)]
        #expect(chosen(TunnelChoice.choose(among: tunnels, app: Version(changed: 5, introduced: 2), excluding: [], start: 0)) == 1)
        // A connector that never had the app (applied before it was introduced) is not asked.
        guard case .configurationPending = TunnelChoice.choose(among: tunnels, app: Version(changed: 5, introduced: 5), excluding: [], start: 0) else {
            Issue.record("an app no connector has yet is pending")
            return
        }
    }

    /// A tunnel that stopped answering PINGs gets no request while another can take it, even when it is idle.
    @Test func suspectConnectionsOnlyWhenNothingElseServes() {
        let version = Version(changed: 1, introduced: 1)
        let tunnels = [FakeTunnel(1, applied: 3, suspect: true), FakeTunnel(2, applied: 3, active: 9)]
        for start in 0..<4 { #expect(chosen(TunnelChoice.choose(among: tunnels, app: version, excluding: [], start: start)) == 2) }
        #expect(chosen(TunnelChoice.choose(among: tunnels, app: version, excluding: [2], start: 0)) == 1)
        // An answering tunnel without the app yet does not beat a suspect one that has it.
        let mixed = [FakeTunnel(1, applied: 3, suspect: true), FakeTunnel(2, applied: 0)]
        #expect(chosen(TunnelChoice.choose(among: mixed, app: version, excluding: [], start: 0)) == 1)
    }

    /// A connector that cannot reach the app's backend gets none of its requests while another connector can.
    @Test func avoidedConnectorsOnlyWhenNothingElseServes() {
        let version = Version(changed: 1, introduced: 1)
        let tunnels = [FakeTunnel(1, applied: 3, connector: "a"), FakeTunnel(2, applied: 3, connector: "a"), FakeTunnel(3, applied: 3, active: 5, connector: "b")]
        for start in 0..<4 { #expect(chosen(TunnelChoice.choose(among: tunnels, app: version, excluding: [], avoiding: ["a"], start: start)) == 3) }
        #expect(chosen(TunnelChoice.choose(among: tunnels, app: version, excluding: [3], avoiding: ["a"], start: 0)) != nil)
    }

    /// Balancing is by connector: its requests on all its connections, times its recent latency.
    @Test func powerOfTwoChoicesByConnector() {
        let version = Version(changed: 1, introduced: 1)
        // Connector a has two idle connections but 6 requests on a third; b one connection with 2.
        let busy = [
            FakeTunnel(1, applied: 1, connector: "a"), FakeTunnel(2, applied: 1, connector: "a"), FakeTunnel(3, applied: 1, active: 6, connector: "a"),
            FakeTunnel(4, applied: 1, active: 2, connector: "b"),
        ]
        for start in 0..<6 { #expect(chosen(TunnelChoice.choose(among: busy, app: version, excluding: [], start: start)) == 4) }
        // Equal load: the one that answers ten times faster wins even with more in flight.
        let slow = [FakeTunnel(1, applied: 1, active: 1, connector: "slow", latency: 0.5), FakeTunnel(2, applied: 1, active: 3, connector: "fast", latency: 0.05)]
        for start in 0..<4 { #expect(chosen(TunnelChoice.choose(among: slow, app: version, excluding: [], start: start)) == 2) }
        // Within the chosen connector, its least busy connection.
        let within = [FakeTunnel(1, applied: 1, active: 4, connector: "a"), FakeTunnel(2, applied: 1, active: 1, connector: "a")]
        #expect(chosen(TunnelChoice.choose(among: within, app: version, excluding: [], start: 0)) == 2)
    }

    /// A connection on the request's own event loop wins within its connector unless it carries `nearSlack` more.
    @Test func aConnectionOnTheCallersEventLoopWinsWithinItsConnector() {
        let version = Version(changed: 1, introduced: 1)
        let near = ObjectIdentifier(FakeTunnel.loops[1])
        let tunnels = [FakeTunnel(1, applied: 1, active: 2, connector: "a", loop: 0), FakeTunnel(2, applied: 1, active: 5, connector: "a", loop: 1)]
        for start in 0..<4 {
            #expect(chosen(TunnelChoice.choose(among: tunnels, app: version, excluding: [], near: near, start: start)) == 2)
            #expect(chosen(TunnelChoice.choose(among: tunnels, app: version, excluding: [], start: start)) == 1, "without a loop, the least busy")
        }
        let crowded = [
            FakeTunnel(1, applied: 1, active: 2, connector: "a", loop: 0),
            FakeTunnel(2, applied: 1, active: 3 + TunnelChoice.nearSlack, connector: "a", loop: 1),
        ]
        #expect(chosen(TunnelChoice.choose(among: crowded, app: version, excluding: [], near: near, start: 0)) == 1)
        // The loop never overrides the exclusions or the choice between connectors.
        #expect(chosen(TunnelChoice.choose(among: tunnels, app: version, excluding: [2], near: near, start: 0)) == 1)
        let twoConnectors = [FakeTunnel(1, applied: 1, connector: "a", loop: 0), FakeTunnel(2, applied: 1, active: 9, connector: "b", loop: 1)]
        for start in 0..<4 { #expect(chosen(TunnelChoice.choose(among: twoConnectors, app: version, excluding: [], near: near, start: start)) == 1) }
    }

    @Test func peakEWMATakesPeaksAtOnceAndForgetsSlowly() {
        var ewma = PeakEWMA()
        let now = ContinuousClock.now
        #expect(ewma.value(at: now) == 0)
        ewma.observe(.milliseconds(100), at: now)
        #expect(abs(ewma.value(at: now) - 0.1) < 1e-9)
        ewma.observe(.milliseconds(500), at: now + .milliseconds(10))
        #expect(abs(ewma.value(at: now + .milliseconds(10)) - 0.5) < 1e-9, "a peak counts at once")
        ewma.observe(.milliseconds(10), at: now + .seconds(1))
        let after = ewma.value(at: now + .seconds(1))
        #expect(after < 0.5 && after > 0.4, "one fast answer pulls it down a little: \(after)")
        #expect(ewma.value(at: now + .seconds(120)) < 0.01, "and it fades while nothing is measured")
    }

    @Test func reachabilityBacksOffAndForgives() {
        let reachability = Reachability()
        let now = ContinuousClock.now
        #expect(reachability.avoided(app: "payroll").isEmpty)
        #expect(reachability.failed(connectorID: "a", app: "payroll", now: now) == .seconds(10))
        #expect(reachability.avoided(app: "payroll", now: now + .seconds(1)) == ["a"])
        #expect(reachability.avoided(app: "wiki", now: now + .seconds(1)).isEmpty)
        // A failure already on its way when the back-off began changes nothing; after the probe fails, twice as long.
        #expect(reachability.failed(connectorID: "a", app: "payroll", now: now + .seconds(2)) == nil)
        #expect(reachability.avoided(app: "payroll", now: now + .seconds(11)).isEmpty)
        // The status says what the last request found: failing, back-off over or not, until one succeeds (issue 26:
        // health went back to ok 20 s after a failure while the backend was still down).
        #expect(reachability.failing(app: "payroll") == ["a"])
        #expect(reachability.failing(app: "wiki").isEmpty)
        #expect(reachability.failed(connectorID: "a", app: "payroll", now: now + .seconds(11)) == .seconds(20))
        #expect(reachability.succeeded(connectorID: "a", app: "payroll"))
        #expect(reachability.avoided(app: "payroll", now: now + .seconds(12)).isEmpty)
        #expect(reachability.failing(app: "payroll").isEmpty)
        #expect(!reachability.succeeded(connectorID: "a", app: "payroll"))
    }

    @Test func livenessVerdicts() {
        let liveness = TunnelLiveness(interval: .seconds(5), timeout: .seconds(15))
        #expect(liveness.verdict(silence: .seconds(6)) == .alive)
        #expect(liveness.verdict(silence: .seconds(7)) == .suspect)
        #expect(liveness.verdict(silence: .seconds(15)) == .dead)
        #expect(TunnelLiveness(interval: .seconds(1), timeout: .seconds(3)).suspectAfter == .seconds(2))
    }

    @Test func drainingAndExcludedConnectionsAreNeverChosenAndTiesRotate() {
        let tunnels = [FakeTunnel(1, applied: 3, draining: true), FakeTunnel(2, applied: 3), FakeTunnel(3, applied: 3)]
        let version = Version(changed: 1, introduced: 1)
        var seen: Set<UInt64> = []
        for start in 0..<6 { seen.insert(chosen(TunnelChoice.choose(among: tunnels, app: version, excluding: [], start: start)) ?? 0) }
        #expect(seen == [2, 3])
        guard case .none = TunnelChoice.choose(among: tunnels, app: version, excluding: [2, 3], start: 0) else {
            Issue.record("nothing left to choose")
            return
        }
        guard case .none = TunnelChoice.choose(among: [FakeTunnel](), app: version, excluding: [], start: 0) else {
            Issue.record("an empty group has nothing")
            return
        }
    }
}

@Suite struct TunnelRegistryTests {
    @Test func aPickWaitsForTheConfigurationToBeApplied() async throws {
        let registry = TunnelRegistry<FakeTunnel>()
        let tunnel = FakeTunnel(1, applied: 1)
        registry.add(tunnel)
        let version = AppCatalog.AppVersion(changed: 2, introduced: 2)
        async let picked = registry.pick(group: "default", app: version, wait: .seconds(30))
        try await Task.sleep(for: .milliseconds(50))
        registry.applied(2, on: tunnel)
        #expect(await picked === tunnel)
    }

    @Test func aPickGivesUpAtItsDeadlineAndOnCancellation() async throws {
        let registry = TunnelRegistry<FakeTunnel>()
        registry.add(FakeTunnel(1, applied: 1))
        let version = AppCatalog.AppVersion(changed: 2, introduced: 2)
        let started = ContinuousClock.now
        #expect(await registry.pick(group: "default", app: version, wait: .milliseconds(100)) == nil)
        #expect(ContinuousClock.now - started >= .milliseconds(100))

        let task = Task { await registry.pick(group: "default", app: version, wait: .seconds(600)) }
        try await Task.sleep(for: .milliseconds(20))
        task.cancel()
        #expect(await task.value == nil)
        // No connection of the group at all: no wait.
        #expect(await registry.pick(group: "other", app: version, wait: .seconds(600)) == nil)
    }

    @Test func aConnectionThatArrivesWithTheConfigurationIsPicked() async throws {
        let registry = TunnelRegistry<FakeTunnel>()
        registry.add(FakeTunnel(1, applied: 0))
        let version = AppCatalog.AppVersion(changed: 1, introduced: 1)
        async let picked = registry.pick(group: "default", app: version, wait: .seconds(30))
        try await Task.sleep(for: .milliseconds(50))
        let second = FakeTunnel(2, applied: 1)
        registry.add(second)
        #expect(await picked === second)
        registry.remove(second)
        #expect(registry.all.map(\.id) == [1])
    }
}

/// When a request that failed on one connector goes to another.
@Suite struct FailoverPolicyTests {
    @Test func idempotentRequestsRetryWhateverHappenedOthersOnlyWhenNeverProcessed() {
        for method in [HTTPRequest.Method.get, .head, .options, .put, .delete] {
            #expect(Failover.mayRetry(method: method, failure: .lost, bodyReplayable: true), "\(method)")
        }
        for method in [HTTPRequest.Method.post, .patch] {
            #expect(!Failover.mayRetry(method: method, failure: .lost, bodyReplayable: true), "\(method)")
            #expect(Failover.mayRetry(method: method, failure: .refused, bodyReplayable: true))
            #expect(Failover.mayRetry(method: method, failure: .notForwarded(status: .badGateway, reason: .backendRefused), bodyReplayable: true))
        }
        // A body that was not kept cannot be sent again, whatever the method.
        #expect(!Failover.mayRetry(method: .put, failure: .refused, bodyReplayable: false))
    }

    @Test func pagesSayWhatHappened() {
        #expect(Failover.page(for: .lost, method: .post).title == "Request interrupted")
        #expect(Failover.page(for: .lost, method: .get).status == .badGateway)
        // A connector that sent no head in time: 504, and never sent again (the backend may be at work on it).
        #expect(Failover.page(for: .timedOut, method: .get).status == .gatewayTimeout)
        #expect(!Failover.mayRetry(method: .get, failure: .timedOut, bodyReplayable: true))
        #expect(RequestForwarder.responseHeadTimeout(AppTimeouts(connect: .seconds(10), response: .seconds(60), sso: .seconds(5))) == .seconds(95))
        #expect(Failover.page(for: .notForwarded(status: .gatewayTimeout, reason: .backendConnectTimeout), method: .post).status == .gatewayTimeout)
        #expect(Failover.failure(of: NIOHTTP2Errors.streamClosed(streamID: 3, errorCode: .refusedStream)) == .refused)
        #expect(Failover.failure(of: NIOHTTP2Errors.streamClosed(streamID: 3, errorCode: .cancel)) == .lost)
    }
}

@Suite struct TokenBucketTests {
    @Test func aBurstThenTheRate() {
        var bucket = TokenBucket(capacity: 3, perSecond: 1)
        let start = ContinuousClock.now
        #expect((0..<5).map { _ in bucket.take(at: start) } == [true, true, true, false, false])
        #expect(bucket.take(at: start + .milliseconds(500)) == false)
        #expect(bucket.take(at: start + .milliseconds(1000)) == true)
        #expect(bucket.take(at: start + .seconds(100)) == true, "refills, up to its capacity")
        #expect((0..<3).map { _ in bucket.take(at: start + .seconds(100)) } == [true, true, false])
    }
}
