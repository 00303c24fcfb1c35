public import Logging
public import NIOCore
import NIOHTTP1
public import NIOPosix
public import ServiceLifecycle

/// The demo's sample app: a small HTTP/1.1 server on loopback that shows what reached it, so a user can
/// see the request after relay, tunnel and connector (forwarding headers, internal Host, path).
public struct SampleBackend: Service {
    let host: String
    let port: Int
    let group: any EventLoopGroup
    let logger: Logger
    let onListening: @Sendable (Int) -> Void

    /// Creates the server; `port` 0 picks a free port, reported through `onListening`.
    public init(host: String = "127.0.0.1", port: Int = 0, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger, onListening: @escaping @Sendable (Int) -> Void) {
        self.host = host
        self.port = port
        self.group = group
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let server = try await ServerBootstrap(group: self.group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: self.host, port: self.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
        self.onListening(server.channel.localAddress?.port ?? self.port)
        try await withGracefulShutdownHandler {
            try await server.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in inbound {
                        group.addTask { await Self.serve(connection) }
                    }
                }
            }
        } onGracefulShutdown: {
            server.channel.close(promise: nil)
        }
    }

    static func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        try? await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            var bodyBytes = 0
            for try await part in inbound {
                switch part {
                case .head(let requestHead):
                    head = requestHead
                    bodyBytes = 0
                case .body(let buffer):
                    bodyBytes += buffer.readableBytes
                case .end:
                    guard let request = head else { continue }
                    let text = Self.page(for: request, bodyBytes: bodyBytes)
                    var buffer = connection.channel.allocator.buffer(capacity: text.utf8.count)
                    buffer.writeString(text)
                    var headers = HTTPHeaders()
                    headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
                    headers.add(name: "Content-Length", value: "\(buffer.readableBytes)")
                    try await outbound.write(contentsOf: [
                        .head(HTTPResponseHead(version: request.version, status: .ok, headers: headers)),
                        .body(.byteBuffer(buffer)),
                        .end(nil),
                    ])
                    if !request.isKeepAlive { return }
                }
            }
        }
    }

    static func page(for request: HTTPRequestHead, bodyBytes: Int) -> String {
        var lines = [
            "Hello from the sample app behind Sallyport.",
            "",
            "This answer came from an internal server on loopback. The request went:",
            "  you -> relay (HTTPS) -> outbound tunnel (mutual TLS, HTTP/2) -> connector -> this app (HTTP).",
            "",
            "What this app received:",
            "  \(request.method.rawValue) \(request.uri)",
        ]
        for (name, value) in request.headers {
            lines.append("  \(name): \(value)")
        }
        if bodyBytes > 0 { lines.append("  (body: \(bodyBytes) bytes)") }
        lines.append("")
        return lines.joined(separator: "\n")
    }
}
