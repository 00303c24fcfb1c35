import Logging
import NIOCore
import NIOPosix
import SallyportOps
import Synchronization
import Testing

/// One connection's failure, or an accept error, never ends a listener: the connections after it are served
/// (issue 26: a `setsockopt` refused on one accepted connection stopped the whole relay).
@Suite struct ListenerTests {
    typealias Connection = NIOAsyncChannel<ByteBuffer, ByteBuffer>

    struct InjectedFailure: Error, CustomStringConvertible {
        var description: String { "injected failure" }
    }

    /// Log lines, kept for the test to read.
    final class Lines: Sendable {
        let lines = Mutex<[String]>([])
        var all: [String] { self.lines.withLock { $0 } }

        func logger() -> Logger {
            Logger(label: "test") { _ in Handler(lines: self) }
        }

        struct Handler: LogHandler {
            let lines: Lines
            var metadata: Logger.Metadata = [:]
            var logLevel: Logger.Level = .trace
            subscript(metadataKey key: String) -> Logger.Metadata.Value? {
                get { self.metadata[key] }
                set { self.metadata[key] = newValue }
            }
            func log(event: LogEvent) {
                let fields = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                self.lines.lines.withLock { $0.append("\(event.message) \(fields)") }
            }
        }
    }

    /// A listener on a free loopback port whose initializer fails for the connections `failing` picks (by their
    /// order, from 0); every other connection is answered "served".
    func listener(
        lines: Lines, logEvery interval: Duration = .seconds(1), failing: @escaping @Sendable (Int) -> Bool
    ) async throws -> Listener<Connection> {
        let count = Atomic<Int>(0)
        return try await Listener<Connection>.bind(
            "test", at: .tcp(host: "127.0.0.1", port: 0), group: MultiThreadedEventLoopGroup.singleton, logger: lines.logger(),
            failureLogInterval: interval
        ) { channel in
            let index = count.add(1, ordering: .relaxed).oldValue
            if failing(index) { return channel.eventLoop.makeFailedFuture(InjectedFailure()) }
            return channel.eventLoop.makeCompletedFuture { try Connection(wrappingChannelSynchronously: channel) }
        }
    }

    /// What the listener says to one new connection: "served", or "" when it closes it unanswered.
    func ask(_ port: Int) async throws -> String {
        let client = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture { try Connection(wrappingChannelSynchronously: channel) }
        }
        return try await client.executeThenClose { inbound, _ in
            var text = ""
            for try await buffer in inbound { text += String(buffer: buffer) }
            return text
        }
    }

    func serve(_ listener: Listener<Connection>) -> Task<Void, any Error> {
        Task {
            try await listener.run { connection in
                try? await connection.executeThenClose { _, outbound in try await outbound.write(ByteBuffer(string: "served")) }
            }
        }
    }

    /// Six connections, every second one failing, with failures logged at most once per `interval`: the failing
    /// ones are closed unanswered, the others served, and the log lines of the failures are returned.
    func failEverySecondConnection(logEvery interval: Duration) async throws -> [String] {
        let lines = Lines()
        let listener = try await self.listener(lines: lines, logEvery: interval) { $0 % 2 == 1 }
        let running = self.serve(listener)
        let port = try #require(listener.channel.localAddress?.port)
        var answers: [String] = []
        for _ in 0..<6 { answers.append(try await self.ask(port)) }
        #expect(answers == ["served", "", "served", "", "served", ""])
        await listener.close()
        try await running.value
        return lines.all.filter { $0.contains("connection closed: it could not be set up") }
    }

    @Test func aFailingInitializerClosesOnlyItsConnection() async throws {
        // Logged with its cause, once per interval however many fail (an hour: the three fall in one).
        let failures = try await self.failEverySecondConnection(logEvery: .seconds(3600))
        #expect(failures.count == 1, "\(failures)")
        #expect(failures.first?.contains("error=injected failure") == true, "\(failures)")
        #expect(failures.first?.contains("listener=test") == true, "\(failures)")
        // Without the limit each failure has a line of its own, and none was left out.
        let each = try await self.failEverySecondConnection(logEvery: .zero)
        #expect(each.count == 3, "\(each)")
        #expect(each.allSatisfy { !$0.contains("not_logged_since") }, "\(each)")
    }

    @Test func acceptErrorsNeverEndTheListener() async throws {
        let lines = Lines()
        let listener = try await self.listener(lines: lines) { _ in false }
        let running = self.serve(listener)
        let port = try #require(listener.channel.localAddress?.port)
        #expect(try await self.ask(port) == "served")
        // As the socket fires them when accept(2) fails: a full file table (NIO's back-off then pauses accepting
        // for a second), and an error that is no I/O error at all.
        listener.channel.pipeline.fireErrorCaught(IOError(errnoCode: EMFILE, reason: "accept(descriptor:addr:size:)"))
        listener.channel.pipeline.fireErrorCaught(InjectedFailure())
        #expect(try await self.ask(port) == "served")
        #expect(lines.all.contains { $0.contains("could not accept a connection") && $0.contains("raise the limit (LimitNOFILE=)") }, "\(lines.all)")
        await listener.close()
        try await running.value
    }

    @Test func aListenerThatClosesByItselfSaysSo() async throws {
        let listener = try await self.listener(lines: Lines()) { _ in false }
        let running = self.serve(listener)
        try await listener.channel.close()
        await #expect(throws: ListenerFailed.self) { try await running.value }
    }
}
