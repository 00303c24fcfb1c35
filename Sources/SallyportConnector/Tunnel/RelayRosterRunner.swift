import Foundation
import Logging
import SallyportConfig
import SallyportWire
import ServiceLifecycle

/// Acts on ``RelayRoster``'s decisions: `connections` tunnel slots (``TunnelSession``) per relay, started as
/// relays join the list and retired (drained) as they leave it. Runs until graceful shutdown and until every
/// slot has drained.
struct RelayRosterRunner {
    let config: ConnectorConfig
    let hub: TunnelHub
    let logger: Logger
    /// Makes slot `index` of the connector's tunnels to a relay.
    let makeSession: @Sendable (_ target: RelayRoster.Target, _ dialer: RelayDialer, _ index: Int, _ retire: AsyncStream<Void>) -> TunnelSession

    private enum Event {
        case relays([ControlMessage.RelayEndpoint])
        case tick
        case shutdown
    }

    /// The configured relay, as the roster's first target.
    static func configuredTarget(_ config: ConnectorConfig) -> RelayRoster.Target {
        RelayRoster.Target(address: config.relay, serverName: config.relayServerName ?? config.relay.host)
    }

    func run(configuredProxy: OutboundProxy?) async {
        var roster = RelayRoster(configured: Self.configuredTarget(self.config))
        var retirements: [HostPort: [AsyncStream<Void>.Continuation]] = [:]
        let (events, sink) = AsyncStream<Event>.makeStream()
        await withDiscardingTaskGroup { sessions in
            func act(_ actions: [RelayRoster.Action]) {
                for action in actions {
                    switch action {
                    case .start(let target):
                        guard let dialer = self.dialer(for: target, configuredProxy: configuredProxy) else { continue }
                        if target != roster.configured { self.logger.info("keeping tunnels to a relay of the list", metadata: ["relay": "\(target)"]) }
                        for index in 0..<self.config.connections {
                            let (retire, trigger) = AsyncStream<Void>.makeStream()
                            retirements[target.address, default: []].append(trigger)
                            let session = self.makeSession(target, dialer, index, retire)
                            sessions.addTask { await session.run() }
                        }
                    case .stop(let target):
                        self.logger.info("no longer dialling this relay", metadata: ["relay": "\(target)", "reason": "\(target == roster.configured ? "a relay of the list serves" : "it left the list")"])
                        for trigger in retirements.removeValue(forKey: target.address) ?? [] { trigger.yield() }
                    }
                }
            }
            await withTaskGroup(of: Void.self) { control in
                control.addTask { for await relays in self.hub.relayLists { sink.yield(.relays(relays)) } }
                control.addTask {
                    while (try? await Task.sleep(for: .seconds(1))) != nil { sink.yield(.tick) }
                }
                control.addTask {
                    try? await gracefulShutdown()
                    sink.yield(.shutdown)
                }
                act(roster.start())
                for await event in events {
                    switch event {
                    case .relays(let relays):
                        act(roster.learned(relays, now: .now))
                    case .tick:
                        var connected: [HostPort: Int] = [:]
                        for (address, count) in self.hub.connectedByRelay {
                            if let address = try? HostPort(parsing: address) { connected[address] = count }
                        }
                        act(roster.tick(connected: connected, now: .now))
                    case .shutdown:
                        // The slots see the shutdown themselves and drain.
                        control.cancelAll()
                        return
                    }
                }
            }
        }
    }

    /// How to reach `target`: directly, or through the proxy its host needs (the environment's `NO_PROXY` may
    /// exempt one relay and not another). Nil, logged, if the proxy setting cannot serve it.
    private func dialer(for target: RelayRoster.Target, configuredProxy: OutboundProxy?) -> RelayDialer? {
        if target.address == self.config.relay { return RelayDialer(relay: target.address, proxy: configuredProxy) }
        switch self.config.proxy.resolve(environment: ProcessInfo.processInfo.environment, target: target.address.host) {
        case .success(let proxy): return RelayDialer(relay: target.address, proxy: proxy)
        case .failure(let problem):
            self.logger.error("cannot dial a relay of the list", metadata: ["relay": "\(target)", "error": "\(problem.message)"])
            return nil
        }
    }
}
