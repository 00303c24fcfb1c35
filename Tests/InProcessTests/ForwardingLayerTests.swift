import AsyncHTTPClient
import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import Synchronization
import Testing

/// The forwarding layer of relay and connector, in one process on loopback: what only end-to-end tests covered,
/// in about a second each.
@Suite struct ForwardingLayerTests {
    @Test(arguments: ClientProtocol.allCases) func aRequestBodyAndItsAnswerCrossBothHopsWhole(_ client: ClientProtocol) async throws {
        try await withSallyport(client: client, backend: { exchange in
            let body = try await exchange.body()
            try await exchange.respond(.ok, "\(exchange.head.method.rawValue) \(exchange.head.path ?? "") \(body.readableBytes)")
        }) { sallyport, backend in
            var request = HTTPClientRequest(url: sallyport.url("/app/upload?x=1"))
            request.method = .POST
            request.body = .bytes(ByteBuffer(repeating: 7, count: 3 << 20))
            let response = try await sallyport.client.execute(request, timeout: .seconds(30))
            let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
            #expect(response.status == .ok)
            #expect(response.version == (client == .http1 ? .http1_1 : .http2))
            #expect(text == "POST /app/upload?x=1 \(3 << 20)")
            // The connector told the backend who asked, and nothing the relay keeps for itself went on.
            let seen = try #require(backend.requests.first)
            #expect(seen.headerFields[HTTPField.Name("X-Forwarded-For")!] == "127.0.0.1")
            #expect(!seen.headerFields.contains { $0.name.canonicalName.hasPrefix("sallyport-") })
        }
    }

    @Test(arguments: ClientProtocol.allCases) func aUserWhoStopsReadingHoldsTheBackendBack(_ client: ClientProtocol) async throws {
        try await withSallyport(client: client, backend: { exchange in
            var head = HTTPResponse(status: .ok)
            head.headerFields[.contentLength] = "\(1 << 30)"
            try await exchange.outbound.write(.head(head))
            let chunk = ByteBuffer(repeating: 1, count: 64 << 10)
            for _ in 0..<(1 << 14) { try await exchange.outbound.write(.body(chunk)) }
        }) { sallyport, backend in
            let response = try await sallyport.client.execute(HTTPClientRequest(url: sallyport.url("/app/big")), timeout: .seconds(60))
            var iterator = response.body.makeAsyncIterator()
            var read = 0
            while read < 1 << 20, let chunk = try await iterator.next() { read += chunk.readableBytes }
            // The user reads no more: what left the backend is what the buffers on the way hold, the kernel's for
            // two TCP connections (loopback grows a receive buffer up to tcp_rmem's maximum, though it stays far
            // below it here) and what relay, connector and client hold in memory (a few MiB). Without
            // back-pressure it would be most of the gigabyte. (Counted as the kernel takes it: the backend's own
            // writer queues ahead of its socket.)
            try await Task.sleep(for: .seconds(2))
            let held = backend.bytesSent
            try await Task.sleep(for: .milliseconds(500))
            let later = backend.bytesSent
            let bound = 2 * (Self.kernelMaximum("tcp_rmem") + Self.kernelMaximum("tcp_wmem")) + (32 << 20)
            #expect(held < bound, "\(held >> 20) MiB left the backend for a user who read 1 MiB (bound \(bound >> 20) MiB)")
            #expect(later == held, "the backend kept sending: \(held) then \(later) bytes")
            // Reading again lets it go on.
            while backend.bytesSent == held, read < held + (64 << 20), let chunk = try await iterator.next() { read += chunk.readableBytes }
            #expect(backend.bytesSent > held)
        }
    }

    /// The largest buffer Linux grows a TCP socket's to (the third value of `net.ipv4.<name>`).
    static func kernelMaximum(_ name: String) -> Int {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/\(name)", encoding: .utf8)) ?? ""
        return text.split(whereSeparator: \.isWhitespace).last.flatMap { Int($0) } ?? (6 << 20)
    }

    @Test(arguments: ClientProtocol.allCases) func aBackendThatNeverAnswersIsA504AfterTheResponseTimeout(_ client: ClientProtocol) async throws {
        try await withSallyport(extra: "timeouts:\n  response: 1s\n", client: client, backend: { exchange in
            _ = try await exchange.body()
            try await Task.sleep(for: .seconds(30))
        }) { sallyport, _ in
            let asked = ContinuousClock.now
            let response = try await sallyport.client.execute(HTTPClientRequest(url: sallyport.url("/app/slow")), timeout: .seconds(20))
            #expect(response.status == .gatewayTimeout)
            #expect(ContinuousClock.now - asked < .seconds(10))
        }
    }

    @Test(arguments: ClientProtocol.allCases) func aBodyThatFallsSilentIsCutAfterTheIdleTimeout(_ client: ClientProtocol) async throws {
        try await withSallyport(extra: "timeouts:\n  idle: 1s\n", client: client, backend: { exchange in
            var head = HTTPResponse(status: .ok)
            head.headerFields[.contentLength] = "1000"
            try await exchange.outbound.write(contentsOf: [.head(head), .body(ByteBuffer(repeating: 3, count: 10))])
            try await Task.sleep(for: .seconds(30))
        }) { sallyport, _ in
            let asked = ContinuousClock.now
            let response = try await sallyport.client.execute(HTTPClientRequest(url: sallyport.url("/app/drip")), timeout: .seconds(20))
            #expect(response.status == .ok)
            // The user learns the body broke off (10 of 1,000 bytes), seconds after it fell silent.
            await #expect(throws: (any Error).self) { _ = try await response.body.collect(upTo: 1 << 20) }
            #expect(ContinuousClock.now - asked < .seconds(10))
        }
    }

    @Test(arguments: ClientProtocol.allCases) func aGetThatMeetsAPooledConnectionTheBackendJustClosedGoesAgainOnANewOne(_ client: ClientProtocol) async throws {
        let count = Atomic<Int>(0)
        try await withSallyport(client: client, backend: { exchange in
            // The second request arrives on the connection the first left in the pool: closed unanswered, as a
            // backend closing an idle keep-alive connection does.
            if count.add(1, ordering: .relaxed).newValue == 2 { throw HarnessFailure("closed without an answer") }
            try await exchange.respond(.ok, "served \(exchange.head.path ?? "")")
        }) { sallyport, backend in
            for path in ["/app/first", "/app/second"] {
                let response = try await sallyport.client.execute(HTTPClientRequest(url: sallyport.url(path)), timeout: .seconds(10))
                #expect(response.status == .ok)
                #expect(String(buffer: try await response.body.collect(upTo: 1 << 20)) == "served \(path)")
            }
            #expect(backend.requests.map(\.path) == ["/app/first", "/app/second", "/app/second"])
        }
    }

    @Test(arguments: ClientProtocol.allCases) func aUserWhoGoesAwayEndsTheBackendExchange(_ client: ClientProtocol) async throws {
        let streaming = AsyncStream<Void>.makeStream()
        let ended = AsyncStream<Void>.makeStream()
        try await withSallyport(client: client, backend: { exchange in
            var head = HTTPResponse(status: .ok)
            head.headerFields[.contentLength] = "\(1 << 30)"
            try await exchange.outbound.write(.head(head))
            streaming.continuation.yield()
            do {
                while true {
                    try await exchange.outbound.write(.body(ByteBuffer(repeating: 2, count: 16 << 10)))
                    try await Task.sleep(for: .milliseconds(5))
                }
            } catch {
                ended.continuation.yield()
                throw error
            }
        }) { sallyport, _ in
            let task = Task {
                let response = try await sallyport.client.execute(HTTPClientRequest(url: sallyport.url("/app/stream")), timeout: .seconds(60))
                for try await _ in response.body {}
            }
            // Once the backend streams (however long a loaded machine takes to get there), the user leaves.
            #expect(await Self.first(of: streaming.stream, within: .seconds(20)), "the request never reached the backend")
            try await Task.sleep(for: .milliseconds(100))
            task.cancel()
            // The backend's connection is closed under it, instead of streaming to nobody.
            #expect(await Self.first(of: ended.stream, within: .seconds(10)), "the backend was still streaming 10 s after the user left")
        }
    }

    /// Whether `stream` yields within `limit`.
    static func first(of stream: AsyncStream<Void>, within limit: Duration) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                var iterator = stream.makeAsyncIterator()
                return await iterator.next() != nil
            }
            group.addTask {
                try? await Task.sleep(for: limit)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    @Test(arguments: ClientProtocol.allCases) func aPathNoAppPublishesIsAnsweredByTheRelay(_ client: ClientProtocol) async throws {
        try await withSallyport(client: client, backend: { exchange in try await exchange.respond(.ok, "backend") }) { sallyport, backend in
            let response = try await sallyport.client.execute(HTTPClientRequest(url: sallyport.url("/elsewhere/")), timeout: .seconds(10))
            #expect(response.status == .notFound)
            #expect(backend.requests.isEmpty)
        }
    }

    @Test(arguments: ClientProtocol.allCases) func aConnectorThatDrainsUnderLoadCostsNoRequest(_ client: ClientProtocol) async throws {
        try await withSallyport(connectors: 2, client: client, backend: { exchange in
            let body = try await exchange.body()
            try await Task.sleep(for: .milliseconds(20))
            try await exchange.respond(.ok, "\(body.readableBytes)")
        }) { sallyport, _ in
            let tally = Tally()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<4 {
                    group.addTask {
                        for request in 0..<40 {
                            var asked = HTTPClientRequest(url: sallyport.url("/app/\(worker)/\(request)"))
                            if request % 2 == 1 {
                                asked.method = .POST
                                asked.body = .bytes(ByteBuffer(repeating: 5, count: 10_000))
                            }
                            let response = try await sallyport.client.execute(asked, timeout: .seconds(20))
                            _ = try await response.body.collect(upTo: 1 << 20)
                            tally.count(response.status)
                        }
                    }
                }
                // One connector of the group leaves while requests are under way, as on SIGTERM.
                try await Task.sleep(for: .milliseconds(300))
                await sallyport.stopConnector(0)
                try await group.waitForAll()
            }
            #expect(tally.statuses == [200: 160], "\(tally.statuses)")
        }
    }
}

/// Statuses of responses, counted from several tasks.
final class Tally: Sendable {
    private let counts = Mutex<[UInt: Int]>([:])
    func count(_ status: HTTPResponseStatus) { self.counts.withLock { $0[status.code, default: 0] += 1 } }
    var statuses: [UInt: Int] { self.counts.withLock { $0 } }
}
