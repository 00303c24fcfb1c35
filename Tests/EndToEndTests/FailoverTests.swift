import Foundation
import SallyportTesting
import Synchronization
import Testing

extension EndToEnd {
    /// Connector groups under faults: connectors in network namespaces of their own, cut off silently with nft,
    /// killed or stopped, while requests keep coming.
    @Suite("Connector groups: liveness and failover")
    struct FailoverTests {
        /// A relay whose tunnel listens on the host end of `namespace`, nginx there as the app's backend, and
        /// connectors inside and outside the namespace.
        struct Bed {
            let namespace: NetworkNamespace
            let deployment: Deployment
            let nginx: Nginx

            static func start(namespaceIndex: Int = 0) async throws -> Bed {
                let namespace = try NetworkNamespace(index: namespaceIndex)
                do {
                    let deployment = try Deployment(hosts: ["app", "second"], tunnelHost: namespace.hostAddress)
                    let nginx = try await Nginx.start(directory: deployment.directory, host: namespace.hostAddress)
                    try deployment.writeApp(name: "app", internalURL: nginx.baseURL + "/")
                    try await deployment.startRelay()
                    return Bed(namespace: namespace, deployment: deployment, nginx: nginx)
                } catch {
                    namespace.remove()
                    throw error
                }
            }

            func tearDown() async {
                try? self.namespace.restore()
                await self.deployment.shutdown()
                await self.nginx.stop()
                self.namespace.remove()
            }
        }

        /// Requests one after another until stopped, each recorded with when it started.
        final class Load: Sendable {
            struct Outcome: Sendable {
                var started: ContinuousClock.Instant
                var status: Int
            }

            private final class Shared: Sendable {
                let outcomes = Mutex<[Outcome]>([])
                let running = Atomic<Bool>(true)
            }

            private let shared: Shared
            private let task: Task<Void, Never>

            init(url: String, caFile: String, every interval: Duration) {
                let shared = Shared()
                self.shared = shared
                self.task = Task {
                    await withTaskGroup(of: Void.self) { group in
                        while shared.running.load(ordering: .relaxed) {
                            group.addTask {
                                let started = ContinuousClock.now
                                let status = (try? await Curl.run(url, caFile: caFile, timeout: 30).status) ?? -1
                                shared.outcomes.withLock { $0.append(Outcome(started: started, status: status)) }
                            }
                            try? await Task.sleep(for: interval)
                        }
                    }
                }
            }

            /// Stops sending and waits for the requests in flight.
            func finish() async -> [Outcome] {
                self.shared.running.store(false, ordering: .relaxed)
                await self.task.value
                return self.shared.outcomes.withLock { $0 }.sorted { $0.started < $1.started }
            }
        }

        @Test("A connector cut off silently is noticed by both sides within the liveness timeout, the relay stops routing to it once it is suspect, and it comes back by itself")
        func silentCut() async throws {
            let bed = try await Bed.start()
            do {
                let deployment = bed.deployment
                let inside = try await deployment.startConnector(name: "inside", namespace: bed.namespace)
                _ = try await deployment.startConnector(name: "outside")
                let relay = try #require(deployment.relay)
                #expect(try await Curl.run(deployment.url("app"), caFile: deployment.caFile).status == 200)
                let connectedBefore = relay.log().components(separatedBy: "connector connected").count - 1

                let load = Load(url: deployment.url("app"), caFile: deployment.caFile, every: .milliseconds(200))
                try await Task.sleep(for: .seconds(1))
                try bed.namespace.cut()
                let cut = ContinuousClock.now
                // The defaults: a PING every 5 s, suspect after 7 s of silence, closed after 15 s.
                try await relay.waitForLog(containing: "tunnel silent", timeout: .seconds(12))
                let suspected = ContinuousClock.now - cut
                try await relay.waitForLog(containing: "tunnel closed: the connector did not answer", timeout: .seconds(20))
                let closedByRelay = ContinuousClock.now - cut
                try await inside.waitForLog(containing: "tunnel closed: the relay did not answer", timeout: .seconds(20))
                let closedByConnector = ContinuousClock.now - cut
                #expect(suspected >= .seconds(5) && suspected < .seconds(9), "suspect after \(suspected)")
                #expect(closedByRelay < .seconds(17), "the relay closed the tunnel after \(closedByRelay)")
                #expect(closedByConnector < .seconds(17), "the connector closed the tunnel after \(closedByConnector)")
                // A change the cut-off connector misses for now.
                try deployment.writeApp(name: "second", internalURL: bed.nginx.baseURL + "/")
                try await Task.sleep(for: .seconds(1))
                try await Task.sleep(for: .seconds(2))
                let outcomes = await load.finish()

                // Once suspect, the connector gets no new requests: every request that started after it succeeded.
                let afterSuspicion = outcomes.filter { $0.started > cut + suspected + .milliseconds(500) }
                #expect(afterSuspicion.count >= 20)
                #expect(afterSuspicion.allSatisfy { $0.status == 200 }, "\(afterSuspicion.map(\.status))")

                // Back on the network, it dials again and receives its configuration.
                try bed.namespace.restore()
                let deadline = ContinuousClock.now + .seconds(45)
                while relay.log().components(separatedBy: "connector connected").count - 1 < connectedBefore + 2, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(200))
                }
                #expect(relay.log().components(separatedBy: "connector connected").count - 1 >= connectedBefore + 2, "\(inside.log().suffix(2000))")
                try await inside.waitForLog(containing: "apps=app,second", timeout: .seconds(10))
            } catch {
                await bed.tearDown()
                throw error
            }
            await bed.tearDown()
        }
    }
}
