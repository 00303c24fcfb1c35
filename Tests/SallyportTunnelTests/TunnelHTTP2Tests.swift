import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import SallyportTunnel
import Testing

/// The tunnel's HTTP/2 settings and GOAWAY handling, between two real NIOHTTP2 handlers in memory.
@Suite struct TunnelHTTP2Tests {
    /// Records every frame and error that reaches the end of a pipeline.
    final class Recorder: ChannelInboundHandler {
        typealias InboundIn = HTTP2Frame
        var frames: [HTTP2Frame] = []
        var errors: [any Error] = []
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { self.frames.append(self.unwrapInboundIn(data)) }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { self.errors.append(error) }
        var goAways: [HTTP2ErrorCode] {
            self.frames.compactMap { if case .goAway(_, let code, _) = $0.payload { code } else { nil } }
        }
    }

    /// A relay (HTTP/2 client) and a connector (server) joined by memory.
    struct Pair {
        let relay = EmbeddedChannel()
        let connector = EmbeddedChannel()
        let relayFrames = Recorder()
        let connectorFrames = Recorder()

        init(_ configuration: NIOHTTP2Handler.Configuration) throws {
            for (channel, mode, recorder) in [(self.relay, NIOHTTP2Handler.ParserMode.client, self.relayFrames), (self.connector, .server, self.connectorFrames)] {
                let handler = NIOHTTP2Handler(
                    mode: mode, frameDelegate: nil, connectionConfiguration: configuration.connection, streamConfiguration: configuration.stream
                )
                try channel.pipeline.syncOperations.addHandler(handler)
                try channel.pipeline.syncOperations.addHandler(recorder)
                try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            }
            try self.shuttle()
        }

        /// Moves bytes both ways until neither side has anything to send.
        func shuttle() throws {
            var moved = true
            while moved {
                moved = false
                while let bytes = try self.relay.readOutbound(as: ByteBuffer.self) {
                    try self.connector.writeInbound(bytes)
                    moved = true
                }
                while let bytes = try self.connector.readOutbound(as: ByteBuffer.self) {
                    try self.relay.writeInbound(bytes)
                    moved = true
                }
            }
        }

        /// Moves what the relay sent to the connector, and nothing back.
        func deliverToConnector() throws {
            while let bytes = try self.relay.readOutbound(as: ByteBuffer.self) { try self.connector.writeInbound(bytes) }
        }

        func send(_ frame: HTTP2Frame, from channel: EmbeddedChannel) {
            channel.write(frame, promise: nil)
        }
    }

    static let request: HPACKHeaders = [":method": "GET", ":scheme": "https", ":path": "/", ":authority": "app"]
    static let response: HPACKHeaders = [":status": "200", "content-length": "5"]

    /// Users cancel requests: each one makes the relay reset its tunnel stream while the connector's answer is
    /// already on its way. NIOHTTP2's defaults end the connection after 200 resets in 30 s (at the connector)
    /// or 200 frames for forgotten streams over the connection's life (at the relay); the tunnel must take any
    /// number and go on serving.
    @Test func usersCancellingRequestsNeverEndTheTunnel() throws {
        let pair = try Pair(TunnelProtocol.http2Configuration())
        var nextStream = 1
        for _ in 0..<20 {
            // A burst of 128 requests (one user's HTTP/2 connection's worth), answered, then all cancelled
            // before the relay has read the answers.
            let streams = (0..<128).map { _ -> HTTP2StreamID in
                defer { nextStream += 2 }
                return HTTP2StreamID(nextStream)
            }
            for stream in streams {
                pair.send(HTTP2Frame(streamID: stream, payload: .headers(.init(headers: Self.request, endStream: true))), from: pair.relay)
            }
            pair.relay.flush()
            try pair.deliverToConnector()
            for stream in streams {
                pair.send(HTTP2Frame(streamID: stream, payload: .headers(.init(headers: Self.response))), from: pair.connector)
                pair.send(HTTP2Frame(streamID: stream, payload: .data(.init(data: .byteBuffer(ByteBuffer(string: "hello")), endStream: true))), from: pair.connector)
                pair.send(HTTP2Frame(streamID: stream, payload: .rstStream(.cancel)), from: pair.relay)
            }
            pair.connector.flush()
            pair.relay.flush()
            try pair.shuttle()
        }
        #expect(nextStream > 5_000, "2,560 streams were reset")

        // The tunnel still serves: a new request gets its answer, and neither side said GOAWAY.
        let last = HTTP2StreamID(nextStream)
        pair.send(HTTP2Frame(streamID: last, payload: .headers(.init(headers: Self.request, endStream: true))), from: pair.relay)
        pair.relay.flush()
        try pair.shuttle()
        pair.send(HTTP2Frame(streamID: last, payload: .headers(.init(headers: Self.response, endStream: false))), from: pair.connector)
        pair.send(HTTP2Frame(streamID: last, payload: .data(.init(data: .byteBuffer(ByteBuffer(string: "hello")), endStream: true))), from: pair.connector)
        pair.connector.flush()
        try pair.shuttle()
        let answered = pair.relayFrames.frames.contains { frame in
            if frame.streamID == last, case .data(let data) = frame.payload { return data.endStream }
            return false
        }
        #expect(answered, "the request after the resets was not answered")
        #expect(pair.relayFrames.goAways.isEmpty && pair.connectorFrames.goAways.isEmpty, "relay heard \(pair.relayFrames.goAways), connector heard \(pair.connectorFrames.goAways)")
        #expect(pair.relayFrames.errors.isEmpty && pair.connectorFrames.errors.isEmpty, "relay: \(pair.relayFrames.errors.prefix(3)), connector: \(pair.connectorFrames.errors.prefix(3))")
    }

    /// A GOAWAY with an error code means the peer will answer nothing more: the connection closes at once, so
    /// that requests go elsewhere instead of waiting. A drain (NO_ERROR) leaves it open for the streams to finish.
    @Test func aGoAwayWithAnErrorClosesTheTunnel() throws {
        final class Heard: @unchecked Sendable { var codes: [HTTP2ErrorCode] = [] }
        let heard = Heard()
        let channel = EmbeddedChannel(handler: TunnelGoAwayHandler { heard.codes.append($0) })
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()

        try channel.writeInbound(HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: .maxID, errorCode: .noError, opaqueData: nil)))
        #expect(channel.isActive && heard.codes.isEmpty)
        #expect(try channel.readInbound(as: HTTP2Frame.self) != nil, "a drain's GOAWAY goes on to the connection manager")

        try channel.writeInbound(HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: .rootStream, errorCode: .enhanceYourCalm, opaqueData: nil)))
        #expect(!channel.isActive, "the tunnel stayed open after its peer gave up on it")
        #expect(heard.codes == [.enhanceYourCalm])
    }
}
