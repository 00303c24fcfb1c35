@testable import SallyportConnector
import Testing

@Suite("Tunnel slot")
struct TunnelSlotTests {
    @Test func firstDialThenServe() {
        var slot = TunnelSlot()
        #expect(slot.start() == [.dial(id: 0, after: .zero)])
        #expect(slot.ready(0) == [])
        #expect(slot.active == 0)
        #expect(slot.pending == nil)
    }

    @Test func aReplacementIsMadeBeforeTheOldConnectionDrains() {
        var slot = TunnelSlot()
        _ = slot.start()
        _ = slot.ready(0)
        #expect(slot.rollRequested() == [.dial(id: 1, after: .zero)])
        // While the replacement is on its way the old one keeps serving, and a second request adds nothing.
        #expect(slot.active == 0)
        #expect(slot.rollRequested() == [])
        #expect(slot.ready(1) == [.drain(id: 0)])
        #expect(slot.active == 1)
        #expect(slot.retiring == [0])
        // The drained connection closing needs nothing more.
        #expect(slot.ended(0, uptime: .seconds(5)) == [])
        #expect(slot.retiring.isEmpty)
    }

    @Test func aFailedReplacementIsRetriedWhileTheOldOneServes() {
        var slot = TunnelSlot(backoff: Backoff(base: .seconds(1), cap: .seconds(1)))
        _ = slot.start()
        _ = slot.ready(0)
        _ = slot.rollRequested()
        let actions = slot.ended(1, uptime: .zero)
        guard case .dial(let id, let delay)? = actions.first, actions.count == 1 else {
            Issue.record("expected one dial, got \(actions)")
            return
        }
        #expect(id == 2)
        #expect(delay > .zero && delay <= .seconds(1))
        #expect(slot.active == 0)
    }

    @Test func theServingConnectionClosingRedialsWithBackoff() {
        var slot = TunnelSlot(backoff: Backoff(base: .seconds(2), cap: .seconds(2)))
        _ = slot.start()
        _ = slot.ready(0)
        let actions = slot.ended(0, uptime: .zero)
        guard case .dial(1, let delay)? = actions.first else {
            Issue.record("expected a dial of 1, got \(actions)")
            return
        }
        #expect(delay > .zero)
        #expect(slot.active == nil)
        // A roll while that dial is pending adds nothing.
        #expect(slot.rollRequested() == [])
    }

    @Test func aStaleReadyIsIgnored() {
        var slot = TunnelSlot()
        _ = slot.start()
        _ = slot.ready(0)
        _ = slot.rollRequested()
        _ = slot.ended(1, uptime: .zero)
        // Connection 1 failed and was replaced by a pending 2; a late ready of 1 changes nothing.
        #expect(slot.ready(1) == [])
        #expect(slot.active == 0)
    }

    @Test func shutdownFinishesOnceEverythingClosed() {
        var slot = TunnelSlot()
        _ = slot.start()
        _ = slot.ready(0)
        _ = slot.rollRequested()
        #expect(slot.shutdown() == [])
        #expect(slot.rollRequested() == [])
        // The replacement that comes up during shutdown drains at once; nothing is dialled again.
        #expect(slot.ready(1) == [.drain(id: 0), .drain(id: 1)])
        #expect(slot.ended(0, uptime: .seconds(1)) == [])
        #expect(slot.ended(1, uptime: .seconds(1)) == [.finish])
    }

    @Test func shutdownWithNothingOpenFinishesAtOnce() {
        var slot = TunnelSlot()
        _ = slot.start()
        _ = slot.ended(0, uptime: .zero)
        _ = slot.ended(1, uptime: .zero)
        #expect(slot.pending == 2)
        _ = slot.shutdown()
        #expect(slot.ended(2, uptime: .zero) == [.finish])
    }

    /// A slot whose relay left the list drains what it has (the serving connection and one on its way), dials
    /// nothing more, and finishes when they have closed.
    @Test func aRetiredSlotDrainsItsConnectionsAndFinishes() {
        var slot = TunnelSlot()
        _ = slot.start()
        _ = slot.ready(0)
        _ = slot.rollRequested()
        #expect(slot.retire() == [.drain(id: 0), .drain(id: 1)])
        #expect(slot.ready(1) == [])
        #expect(slot.rollRequested() == [])
        #expect(slot.ended(1, uptime: .seconds(1)) == [])
        #expect(slot.ended(0, uptime: .seconds(9)) == [.finish])

        var idle = TunnelSlot()
        _ = idle.start()
        _ = idle.ended(0, uptime: .zero)
        #expect(idle.retire() == [.drain(id: 1)])
        #expect(idle.ended(1, uptime: .zero) == [.finish])
    }
}
