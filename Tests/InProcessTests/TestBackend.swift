import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOPosix
import Synchronization

/// An HTTP/1.1 backend in the test process whose every exchange the test writes: it reads the request as it
/// likes (all of it, part by part, or not at all) and answers as it likes (streamed, slowly, with trailers, never).
final class TestBackend: Sendable {
    typealias Connection = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

    /// One request as the backend sees it.
    final class Exchange: @unchecked Sendable {
        let head: HTTPRequest
        var inbound: NIOAsyncChannelInboundStream<HTTPRequestPart>.AsyncIterator
        let outbound: NIOAsyncChannelOutboundWriter<HTTPResponsePart>
        private(set) var ended = false

        init(head: HTTPRequest, inbound: NIOAsyncChannelInboundStream<HTTPRequestPart>.AsyncIterator, outbound: NIOAsyncChannelOutboundWriter<HTTPResponsePart>) {
            self.head = head
            self.inbound = inbound
            self.outbound = outbound
        }

        /// The next body chunk; nil at the request's end.
        func nextChunk() async throws -> ByteBuffer? {
            guard !self.ended else { return nil }
            while let part = try await self.inbound.next() {
                switch part {
                case .body(let buffer): return buffer
                case .end: self.ended = true; return nil
                case .head: continue
                }
            }
            self.ended = true
            return nil
        }

        /// The rest of the body.
        func body() async throws -> ByteBuffer {
            var all = ByteBuffer()
            while var chunk = try await self.nextChunk() { all.writeBuffer(&chunk) }
            return all
        }

        /// A whole answer.
        func respond(_ status: HTTPResponse.Status = .ok, _ text: String, fields: HTTPFields = [:]) async throws {
            var head = HTTPResponse(status: status, headerFields: fields)
            head.headerFields[.contentLength] = "\(text.utf8.count)"
            try await self.outbound.write(contentsOf: [.head(head), .body(ByteBuffer(string: text)), .end(nil)])
        }
    }

    typealias Handler = @Sendable (Exchange) async throws -> Void

    let channel: NIOAsyncChannel<Connection, Never>
    let handler: Handler
    let counter: SentBytesCounter
    /// Requests seen, in order of arrival.
    let seen = Mutex<[HTTPRequest]>([])

    var port: Int { self.channel.channel.localAddress?.port ?? 0 }
    var requests: [HTTPRequest] { self.seen.withLock { $0 } }

    private init(channel: NIOAsyncChannel<Connection, Never>, handler: @escaping Handler, counter: SentBytesCounter) {
        self.channel = channel
        self.handler = handler
        self.counter = counter
    }

    /// Bytes the kernel took from the backend's connections: what really left it, unlike what a handler handed
    /// to its writer (which may wait in the connection's buffer).
    var bytesSent: Int { self.counter.total.load(ordering: .relaxed) }

    /// Listens on a free loopback port; `run()` serves.
    static func start(_ handler: @escaping Handler) async throws -> TestBackend {
        let counter = SentBytesCounter()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(counter)
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: false)
                    try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                    return try Connection(wrappingChannelSynchronously: channel)
                }
            }
        return TestBackend(channel: channel, handler: handler, counter: counter)
    }

    /// Serves connections until the listener closes; each request goes to the handler in turn.
    func run() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            try await self.channel.executeThenClose { connections in
                for try await connection in connections {
                    group.addTask {
                        try? await connection.executeThenClose { inbound, outbound in
                            var iterator = inbound.makeAsyncIterator()
                            while let part = try await iterator.next() {
                                guard case .head(let head) = part else { continue }
                                self.seen.withLock { $0.append(head) }
                                let exchange = Exchange(head: head, inbound: iterator, outbound: outbound)
                                try await self.handler(exchange)
                                // Whatever the handler left of the request is read before the next one.
                                while try await exchange.nextChunk() != nil {}
                                iterator = exchange.inbound
                            }
                        }
                    }
                }
            }
        }
    }

    func close() async {
        try? await self.channel.channel.close()
    }
}

/// Counts the bytes the kernel took from a connection (its writes' promises succeeded).
final class SentBytesCounter: ChannelOutboundHandler, Sendable {
    typealias OutboundIn = ByteBuffer
    let total = Atomic<Int>(0)

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let count = self.unwrapOutboundIn(data).readableBytes
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenSuccess { self.total.add(count, ordering: .relaxed) }
        written.futureResult.cascade(to: promise)
        context.write(data, promise: written)
    }
}
