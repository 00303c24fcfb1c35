public import Logging
public import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1
import NIOPosix
public import SallyportHTTP

/// The admin listener of the relay and the connector: plain HTTP on a loopback address by default, serving
/// `/metrics`, `/readyz`, `/livez` and the status page. Plain HTTP because Prometheus and load balancer
/// probes scrape it from the host; bind it to a non-loopback address only behind a firewall.
public enum AdminListener {
    public typealias Server = Listener<SmallHTTPServer.Connection>

    /// Binds `address` (port 0: any free port).
    public static func bind(at address: Server.Address, group: any EventLoopGroup, logger: Logger) async throws -> Server {
        try await Listener.bind("admin", at: address, backlog: 128, group: group, logger: logger) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                return try SmallHTTPServer.Connection(wrappingChannelSynchronously: channel)
            }
        }
    }

    /// Serves every connection `server` accepts with `endpoint`, until the listener closes.
    public static func serve(_ server: Server, with endpoint: SmallHTTPServer) async throws {
        try await server.run { connection in await endpoint.serve(connection) }
    }
}
