import SallyportConfig
@testable import SallyportConnector
import SallyportWire
import Testing

@Suite("Relay roster")
struct RelayRosterTests {
    let balancer = RelayRoster.Target(address: HostPort(host: "relays.example.com", port: 8443), serverName: "relays.example.com")
    let a = ControlMessage.RelayEndpoint(address: "relay-a.example.com:8443", serverName: "relay-a.example.com")
    let b = ControlMessage.RelayEndpoint(address: "relay-b.example.com:8443", serverName: "relay-b.example.com")
    let t0 = ContinuousClock.now

    func target(_ endpoint: ControlMessage.RelayEndpoint) -> RelayRoster.Target {
        RelayRoster.Target(address: try! HostPort(parsing: endpoint.address), serverName: endpoint.serverName)
    }

    @Test func theConfiguredRelayIsDialledFirstAndAloneWithoutAList() {
        var roster = RelayRoster(configured: balancer)
        #expect(roster.start() == [.start(balancer)])
        // A relay of protocol 3 sends no list; nothing changes however long it serves.
        #expect(roster.learned([], now: t0) == [])
        #expect(roster.tick(connected: [balancer.address: 2], now: t0 + .seconds(60)) == [])
    }

    @Test func aBalancerIsRetiredOnceARelayOfTheListServes() {
        var roster = RelayRoster(configured: balancer)
        _ = roster.start()
        #expect(Set(roster.learned([b, a], now: t0).map { "\($0)" }) == Set([RelayRoster.Action.start(target(a)), .start(target(b))].map { "\($0)" }))
        // Until a listed relay serves, the balancer's tunnels stay.
        #expect(roster.tick(connected: [balancer.address: 2], now: t0 + .seconds(1)) == [])
        #expect(roster.tick(connected: [target(a).address: 1], now: t0 + .seconds(2)) == [.stop(balancer)])
        #expect(roster.tick(connected: [target(a).address: 2, target(b).address: 2], now: t0 + .seconds(3)) == [])
        // The same list again changes nothing.
        #expect(roster.learned([a, b], now: t0 + .seconds(4)) == [])
    }

    @Test func aConfiguredAddressThatIsListedIsKeptAndNotDialledTwice() {
        let configured = target(a)
        var roster = RelayRoster(configured: configured)
        _ = roster.start()
        #expect(roster.learned([a, b], now: t0) == [.start(target(b))])
        #expect(roster.tick(connected: [configured.address: 2, target(b).address: 2], now: t0 + .seconds(1)) == [])
        // Even when it leaves the list, the configured relay is not given up.
        #expect(roster.learned([b], now: t0 + .seconds(2)) == [])
    }

    @Test func aRelayThatLeavesTheListIsGivenUpOnceItHasHadNoTunnelForAWhile() {
        var roster = RelayRoster(configured: balancer)
        _ = roster.start()
        _ = roster.learned([a, b], now: t0)
        _ = roster.tick(connected: [target(a).address: 2, target(b).address: 2], now: t0 + .seconds(1))
        #expect(roster.learned([a], now: t0 + .seconds(2)) == [])
        // Its tunnels go (it stopped): ten seconds without one, and it is no longer dialled.
        #expect(roster.tick(connected: [target(a).address: 2], now: t0 + .seconds(3)) == [])
        #expect(roster.tick(connected: [target(a).address: 2], now: t0 + .seconds(12)) == [])
        #expect(roster.tick(connected: [target(a).address: 2], now: t0 + .seconds(13)) == [.stop(target(b))])
        #expect(roster.running.keys.map(\.description).sorted() == ["relay-a.example.com:8443"])
        // Listed again later: dialled again.
        #expect(roster.learned([a, b], now: t0 + .seconds(20)) == [.start(target(b))])
    }

    /// A relay that lost the database drops out of the other relays' lists while users and connectors still
    /// reach it: as long as its tunnels are up, it is kept.
    @Test func aRelayOffTheListThatStillServesIsKept() {
        var roster = RelayRoster(configured: balancer)
        _ = roster.start()
        _ = roster.learned([a, b], now: t0)
        #expect(roster.tick(connected: [target(a).address: 2, target(b).address: 2], now: t0 + .milliseconds(500)) == [.stop(balancer)])
        #expect(roster.learned([a], now: t0 + .seconds(1)) == [])
        for second in 2..<60 {
            #expect(roster.tick(connected: [target(a).address: 2, target(b).address: 2], now: t0 + .seconds(second)) == [])
        }
        // Back on the list: nothing to do, its tunnels never went.
        #expect(roster.learned([a, b], now: t0 + .seconds(61)) == [])
        #expect(roster.tick(connected: [target(a).address: 2], now: t0 + .seconds(80)) == [])
    }

    @Test func theConfiguredAddressIsDialledAgainWhenNoListedRelayServes() {
        var roster = RelayRoster(configured: balancer)
        _ = roster.start()
        _ = roster.learned([a, b], now: t0)
        _ = roster.tick(connected: [target(a).address: 2], now: t0 + .seconds(1))
        // Every listed relay out of reach: after a while, back to the balancer to learn where they went.
        #expect(roster.tick(connected: [:], now: t0 + .seconds(2)) == [])
        #expect(roster.tick(connected: [:], now: t0 + .seconds(31)) == [])
        #expect(roster.tick(connected: [:], now: t0 + .seconds(32)) == [.start(balancer)])
        #expect(roster.tick(connected: [:], now: t0 + .seconds(40)) == [])
        #expect(roster.tick(connected: [target(b).address: 1], now: t0 + .seconds(41)) == [.stop(balancer)])
    }

    @Test func aListIsCutAtSixteenRelays() {
        var roster = RelayRoster(configured: balancer)
        _ = roster.start()
        let many = (0..<40).map { ControlMessage.RelayEndpoint(address: "relay-\($0).example.com:8443", serverName: "relay-\($0).example.com") }
        #expect(roster.learned(many, now: t0).count == 16)
    }

    @Test func entriesThatAreNotHostAndPortAreSkipped() {
        var roster = RelayRoster(configured: balancer)
        _ = roster.start()
        let bad = ControlMessage.RelayEndpoint(address: "not an address", serverName: "x")
        #expect(roster.learned([bad], now: t0) == [])
        #expect(roster.learned([bad, a], now: t0) == [.start(target(a))])
    }
}
