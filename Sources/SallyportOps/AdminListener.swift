public import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1
import NIOPosix
public import SallyportHTTP

/// The admin listener of the relay and the connector: plain HTTP on a loopback address by default, serving
/// `/metrics`, `/readyz`, `/livez` and the status page. Plain HTTP because Prometheus and load balancer
/// probes scrape it from the host; bind it to a non-loopback address only behind a firewall.
public enum AdminListener {
    public typealias Server = NIOAsyncChannel<SmallHTTPServer.Connection, Never>

    /// Binds `host:port` (port 0: any free port).
    public static func bind(host: String, port: Int, group: any EventLoopGroup) async throws -> Server {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                    return try SmallHTTPServer.Connection(wrappingChannelSynchronously: channel)
                }
            }
    }

    /// Serves every connection `server` accepts with `endpoint`, until the listener closes.
    public static func serve(_ server: Server, with endpoint: SmallHTTPServer) async throws {
        try await server.executeThenClose { inbound in
            try await withThrowingDiscardingTaskGroup { connections in
                for try await connection in inbound {
                    connections.addTask { await endpoint.serve(connection) }
                }
            }
        }
    }
}
