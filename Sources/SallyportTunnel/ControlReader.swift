import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Reads control messages from the body of a control stream (either side).
public struct ControlReader<Part: Sendable> {
    private var iterator: NIOAsyncChannelInboundStream<Part>.AsyncIterator
    private var decoder = ControlFrameDecoder()
    private let body: (Part) -> ByteBuffer?
    private let isEnd: (Part) -> Bool

    /// Reads the response body of a control stream (the relay's side).
    public init(inbound: NIOAsyncChannelInboundStream<Part>) where Part == HTTPResponsePart {
        self.iterator = inbound.makeAsyncIterator()
        self.body = { part in
            if case .body(let buffer) = part { return buffer }
            return nil
        }
        self.isEnd = { part in
            if case .end = part { return true }
            return false
        }
    }

    /// Reads the request body of a control stream (the connector's side).
    public init(iterator: NIOAsyncChannelInboundStream<Part>.AsyncIterator) where Part == HTTPRequestPart {
        self.iterator = iterator
        self.body = { part in
            if case .body(let buffer) = part { return buffer }
            return nil
        }
        self.isEnd = { part in
            if case .end = part { return true }
            return false
        }
    }

    /// The next message, or nil when the peer ended the stream.
    public mutating func next() async throws -> ControlMessage? {
        while true {
            if let message = try self.decoder.next() { return message }
            guard let part = try await self.iterator.next(), !self.isEnd(part) else { return nil }
            if let buffer = self.body(part) { self.decoder.append(buffer) }
        }
    }

    /// Like ``next()``, but closes `channel` when nothing arrives within `timeout`.
    public mutating func next(timeout: TimeAmount, closing channel: any Channel) async throws -> ControlMessage? {
        let timer = channel.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
        defer { timer.cancel() }
        return try await self.next()
    }
}

