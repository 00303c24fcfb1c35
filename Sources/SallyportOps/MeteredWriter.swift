import HTTPTypes
public import NIOCore
public import NIOHTTPTypes
import Synchronization

/// What went out in answer to one request: its final status and body bytes, for the access log and metrics.
public final class ResponseMeter: Sendable {
    private let statusCode = Atomic<Int>(0)
    private let bodyBytes = Atomic<Int>(0)
    private let noted = Mutex<String?>(nil)

    public init() {}

    /// The final (non-informational) status written; 0 while none was.
    public var status: Int { self.statusCode.load(ordering: .relaxed) }
    /// Body bytes written.
    public var bytes: Int { self.bodyBytes.load(ordering: .relaxed) }
    /// A reason noted along the way (the connector's `sallyport-error` code, an SSO outcome).
    public var reason: String? { self.noted.withLock { $0 } }

    public func note(reason: String) { self.noted.withLock { $0 = reason } }

    func observe(_ part: HTTPResponsePart) {
        switch part {
        case .head(let head):
            if head.status.kind != .informational || head.status.code == 101 { self.statusCode.store(head.status.code, ordering: .relaxed) }
        case .body(let buffer):
            self.bodyBytes.add(buffer.readableBytes, ordering: .relaxed)
        case .end:
            break
        }
    }
}

/// A response writer that tells a ``ResponseMeter`` what it writes.
public struct MeteredWriter: Sendable {
    public let base: NIOAsyncChannelOutboundWriter<HTTPResponsePart>
    public let meter: ResponseMeter

    public init(_ base: NIOAsyncChannelOutboundWriter<HTTPResponsePart>, meter: ResponseMeter = ResponseMeter()) {
        self.base = base
        self.meter = meter
    }

    public func write(_ part: HTTPResponsePart) async throws {
        self.meter.observe(part)
        try await self.base.write(part)
    }

    public func write(contentsOf parts: [HTTPResponsePart]) async throws {
        for part in parts { self.meter.observe(part) }
        try await self.base.write(contentsOf: parts)
    }
}
