public import SallyportWire
import HTTPTypes
public import NIOCore
public import NIOHTTPTypes

/// What a control stream carries, whichever side reads it: the relay reads a response body, the connector a
/// request body.
public protocol ControlStreamPart: Sendable {
    /// A body part with these bytes.
    static func body(_ bytes: ByteBuffer) -> Self
    /// The bytes of a body part; nil for a head or an end.
    var bodyBytes: ByteBuffer? { get }
    /// Whether this part ends the stream.
    var isEnd: Bool { get }
}

extension HTTPRequestPart: ControlStreamPart {
    public var bodyBytes: ByteBuffer? { if case .body(let bytes) = self { bytes } else { nil } }
    public var isEnd: Bool { if case .end = self { true } else { false } }
}

extension HTTPResponsePart: ControlStreamPart {
    public var bodyBytes: ByteBuffer? { if case .body(let bytes) = self { bytes } else { nil } }
    public var isEnd: Bool { if case .end = self { true } else { false } }
}

extension ControlFraming {
    /// Sends one message as a body part of a control stream.
    public static func send<Part: ControlStreamPart>(_ message: ControlMessage, on writer: NIOAsyncChannelOutboundWriter<Part>) async throws {
        try await writer.write(.body(try self.encode(message, allocator: ByteBufferAllocator())))
    }
}

/// Reads control messages from the body of a control stream (either side).
public struct ControlReader<Part: ControlStreamPart> {
    private var iterator: NIOAsyncChannelInboundStream<Part>.AsyncIterator
    private var decoder = ControlFrameDecoder()

    /// Reads from `iterator`, whose stream's head has been read already (or is read by ``next()`` and skipped).
    public init(iterator: NIOAsyncChannelInboundStream<Part>.AsyncIterator) {
        self.iterator = iterator
    }

    /// The next message, or nil when the peer ended the stream.
    public mutating func next() async throws -> ControlMessage? {
        while true {
            if let message = try self.decoder.next() { return message }
            guard let part = try await self.iterator.next(), !part.isEnd else { return nil }
            if let bytes = part.bodyBytes { self.decoder.append(bytes) }
        }
    }

    /// Like ``next()``, but closes `channel` when nothing arrives within `timeout`.
    public mutating func next(timeout: TimeAmount, closing channel: any Channel) async throws -> ControlMessage? {
        let timer = channel.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
        defer { timer.cancel() }
        return try await self.next()
    }
}
