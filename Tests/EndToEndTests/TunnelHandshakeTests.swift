import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP2
import NIOHTTPTypes
import NIOHTTPTypesHTTP2
import NIOPosix
import NIOSSL
import SallyportPKI
import SallyportTesting
import SallyportTunnel
import SallyportWire
import Testing

extension EndToEnd {
    /// The tunnel's opening as docs/tunnel-protocol.md describes it, against a real relay, with a connector the
    /// test plays itself (mutual TLS with a certificate of the connector CA, HTTP/2 as the server).
    @Suite("Tunnel handshake")
    struct TunnelHandshakeTests {
        typealias Stream = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

        /// Dials the relay's tunnel listener and returns the first stream the relay opens (the control stream).
        static func dial(_ deployment: Deployment, certificate given: (certificate: String, key: String)? = nil) async throws -> (any Channel, Stream) {
            let (certificate, key) = try given ?? deployment.pki.issueConnector(name: "handshake-test")
            let tls = try TunnelTLS.connectorContext(certificate: certificate, key: key, relayCA: deployment.pki.tunnelCA)
            let (channel, multiplexer) = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: deployment.tunnelPort) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: "localhost"))
                        let multiplexer = try sync.configureAsyncHTTP2Pipeline(mode: .server, configuration: TunnelProtocol.http2Configuration()) { stream in
                            stream.eventLoop.makeCompletedFuture {
                                try stream.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTPServerCodec())
                                return try Stream(wrappingChannelSynchronously: stream)
                            }
                        }
                        return (channel, multiplexer)
                    }
                }
            var streams = multiplexer.inbound.makeAsyncIterator()
            let control = try #require(try await streams.next(), "the relay opened no control stream")
            return (channel, control)
        }

        @Test("A connector of another protocol version is told why and refused; one that never says hello is closed after 15 s")
        func helloVersionAndTimeout() async throws {
            let deployment = try Deployment(hosts: ["app"])
            try await deployment.startRelay()

            // Version 99: the relay answers with an error naming both versions, then closes.
            let (channel, control) = try await Self.dial(deployment)
            let message: ControlMessage? = try await control.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                guard case .head(let head)? = try await iterator.next() else { return nil }
                #expect(head.path == TunnelProtocol.controlPath)
                try await outbound.write(.head(HTTPResponse(status: .ok)))
                try await ControlFraming.send(.hello(.init(protocolVersion: 99, connector: "old", host: "test", software: "test")), on: outbound)
                var messages = ControlReader(iterator: iterator)
                return try await messages.next()
            }
            guard case .error(let text, _)? = message else {
                Issue.record("expected an error message, got \(String(describing: message))")
                return
            }
            #expect(text.contains("tunnel protocol \(ControlMessage.oldestProtocolVersion) to \(TunnelProtocol.version)") && text.contains("99"), "\(text)")
            try await channel.closeFuture.get()
            #expect(!(deployment.relay?.log().contains("connector connected") ?? true))

            // Silence after the control stream opens: the relay closes the connection after its 15 s hello timeout.
            let started = ContinuousClock.now
            let (silent, quiet) = try await Self.dial(deployment)
            try? await quiet.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                _ = try await iterator.next()
                try await outbound.write(.head(HTTPResponse(status: .ok)))
                try await silent.closeFuture.get()
            }
            try await silent.closeFuture.get()
            let waited = ContinuousClock.now - started
            #expect(waited >= .seconds(14) && waited < .seconds(40), "closed after \(waited)")
            await deployment.shutdown()
        }
    }
}
