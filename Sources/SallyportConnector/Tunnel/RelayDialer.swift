import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import SallyportConfig
import Synchronization

/// How the connector's connections reach the relay: directly, or through an HTTP proxy with `CONNECT`
/// (NIOExtras' `NIOHTTP1ProxyConnectHandler`). Once the proxy says 200, its HTTP handlers leave the pipeline
/// and the connection is a byte pipe to the relay: TLS runs end to end over it, so the proxy sees nothing
/// but the relay's name and port.
struct RelayDialer: Sendable {
    let relay: HostPort
    let proxy: OutboundProxy?

    /// Where the TCP connection goes first.
    var firstHop: HostPort { self.proxy.map { HostPort(host: $0.host, port: $0.port) } ?? self.relay }

    /// A TCP connection (keep-alive on) that is a byte pipe to the relay when this returns: through the proxy's
    /// `CONNECT` when there is one. NIO sets TCP_NODELAY. (`.socketOption(.tcp_nodelay)` would be SOL_SOCKET's
    /// SO_DEBUG, which the service user may not set.)
    func connect(group: any EventLoopGroup, timeout: TimeAmount = .seconds(10)) async throws -> any Channel {
        let established = FutureBox()
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                established.set(self.establish(on: channel, timeout: timeout))
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .connect(host: self.firstHop.host, port: self.firstHop.port)
            .get()
        do {
            try await established.future?.get()
        } catch {
            channel.close(promise: nil)
            throw error
        }
        return channel
    }

    /// Completes when the channel reaches the relay: at once without a proxy, after the proxy's 200 with one.
    func establish(on channel: any Channel, timeout: TimeAmount = .seconds(10)) -> EventLoopFuture<Void> {
        guard let proxy = self.proxy else { return channel.eventLoop.makeSucceededVoidFuture() }
        let relay = self.relay
        let answered = channel.eventLoop.makePromise(of: Void.self)
        let observer = ProxyAnswerObserver()
        do {
            let sync = channel.pipeline.syncOperations
            let encoder = HTTPRequestEncoder()
            let decoder = ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes))
            var headers = HTTPHeaders([("Host", "\(relay)")])
            if let authorization = proxy.authorization { headers.add(name: "Proxy-Authorization", value: authorization) }
            let connect = NIOHTTP1ProxyConnectHandler(
                targetHost: relay.host, targetPort: relay.port, headers: headers, deadline: .now() + timeout, promise: answered
            )
            try sync.addHandler(encoder, name: "proxy-encoder")
            try sync.addHandler(decoder, name: "proxy-decoder")
            try sync.addHandler(observer, name: "proxy-observer")
            try sync.addHandler(connect, name: "proxy-connect")
            return answered.futureResult.flatMapErrorThrowing { error in
                throw ProxyFailure(proxy: proxy, relay: relay, status: observer.status, underlying: error)
            }.flatMap {
                // The pipe is open (the CONNECT handler has removed itself): the proxy's HTTP handlers go, in
                // order, before TLS is added.
                channel.pipeline.removeHandler(name: "proxy-observer").flatMap {
                    channel.pipeline.removeHandler(name: "proxy-decoder")
                }.flatMap {
                    channel.pipeline.removeHandler(name: "proxy-encoder")
                }
            }
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
    }
}

/// Remembers the status of the proxy's answer to `CONNECT`, to say what went wrong.
private final class ProxyAnswerObserver: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = HTTPClientResponsePart
    typealias InboundOut = HTTPClientResponsePart

    private let head = Mutex<HTTPResponseStatus?>(nil)
    var status: HTTPResponseStatus? { self.head.withLock { $0 } }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let response) = self.unwrapInboundIn(data) { self.head.withLock { $0 = response.status } }
        context.fireChannelRead(data)
    }
}

/// The proxy did not open a pipe to the relay; says what to check.
struct ProxyFailure: Error, CustomStringConvertible {
    let proxy: OutboundProxy
    let relay: HostPort
    let status: HTTPResponseStatus?
    let underlying: any Error

    var description: String {
        let via = "proxy \(self.proxy) (from \(self.proxy.source))"
        let target = "\(self.relay)"
        switch self.status?.code {
        case 407, 401:  // 407 is the standard; some proxies (tinyproxy) answer 401
            let code = self.status?.code ?? 407
            return self.proxy.username == nil
                ? "\(via) wants authentication (\(code)): put the user and password in the proxy URL, http://USER:PASSWORD@host:port"
                : "\(via) refused the user \(self.proxy.username ?? "") (\(code)): check the proxy user name and password"
        case 403:
            return "\(via) does not allow CONNECT to \(target) (403): allow that host and port in the proxy (many allow CONNECT to port 443 only)"
        case let code?:
            return "\(via) answered CONNECT \(target) with \(code) \(self.status?.reasonPhrase ?? ""): check that the proxy can reach the relay"
        case nil:
            if let error = self.underlying as? NIOHTTP1ProxyConnectHandler.Error, error == .httpProxyHandshakeTimeout() {
                return "\(via) did not answer CONNECT \(target) in time: is this the proxy's address and port?"
            }
            return "\(via) closed the connection without answering CONNECT \(target): is this an HTTP proxy?"
        }
    }
}
