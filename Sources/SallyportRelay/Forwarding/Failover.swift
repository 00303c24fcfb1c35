import HTTPTypes
import NIOCore
import NIOHTTP2
import NIOHTTPTypes
import SallyportHTTP
import SallyportTunnel
import SallyportWire

/// When a request that failed on one connector may go to another (RFC 9110 §9.2.2 and the tunnel's own
/// signals), as a pure function of what is known about the failure.
enum Failover {
    /// Why an attempt on a tunnel stream ended before anything reached the user.
    enum Failure: Sendable, Equatable {
        /// The connector refused the stream (HTTP/2 REFUSED_STREAM, GOAWAY): it never processed it.
        case refused
        /// The connector answered that it could not reach the backend: the request never left it.
        case notForwarded(status: HTTPResponse.Status, reason: ConnectorErrorReason)
        /// The stream or the tunnel died before a response: the backend may or may not have the request.
        case lost
        /// The connector sent no response head within the app's backend timeouts and a margin: a connector
        /// that answers nothing is not waited for forever. Never retried: the backend may be working on it.
        case timedOut
    }

    /// Methods a client may repeat without changing the outcome (RFC 9110 §9.2.2).
    static func isIdempotent(_ method: HTTPRequest.Method) -> Bool {
        [.get, .head, .options, .put, .delete, .trace].contains(method)
    }

    /// Whether to send the request again on another connector: never when part of its body is gone; when
    /// the connector provably did not process it, always; when it may have, only for idempotent methods.
    static func mayRetry(method: HTTPRequest.Method, failure: Failure, bodyReplayable: Bool) -> Bool {
        guard bodyReplayable else { return false }
        switch failure {
        case .refused, .notForwarded: return true
        case .lost: return isIdempotent(method)
        case .timedOut: return false
        }
    }

    /// The failure a tunnel stream's error means, before any response.
    static func failure(of error: any Error) -> Failure {
        if let closed = error as? NIOHTTP2Errors.StreamClosed, closed.errorCode == .refusedStream { return .refused }
        return .lost
    }

    /// What the user gets when no connector could take the request.
    static func page(for failure: Failure, method: HTTPRequest.Method) -> ErrorPage {
        switch failure {
        case .notForwarded(let status, _):
            return status == .gatewayTimeout ? .gatewayTimeout : .badGateway
        case .refused:
            return .noConnector
        case .lost where !isIdempotent(method):
            return ErrorPage(
                status: .badGateway,
                title: "Request interrupted",
                detail: "The connection to the application was lost while it handled your request, so it may or may not have been carried out. Check before you send it again."
            )
        case .lost:
            return .badGateway
        case .timedOut:
            return .gatewayTimeout
        }
    }
}

/// The request body sent so far, kept (up to `limit` bytes) so that the request can be sent again on another
/// connector; parts not yet read stay in the user's connection and follow the replayed ones.
struct ReplayBuffer {
    /// Bodies larger than this are not kept: such a request is sent once.
    static let limit = 64 * 1024

    private(set) var parts: [HTTPRequestPart] = []
    private var bytes = 0
    /// Body bytes read from the user so far (kept or not).
    private(set) var received = 0
    /// Part of the body was sent and not kept.
    private(set) var overflowed = false
    /// The request's end was read from the user.
    private(set) var ended = false

    /// Whether the request can be sent again: everything sent so far is kept.
    var isReplayable: Bool { !self.overflowed }

    /// How copying the request into a tunnel stream ended.
    enum Outcome: Equatable {
        /// The request's end was written.
        case complete
        /// The user's side ended early or broke the protocol.
        case sourceEnded
        /// The tunnel stream failed.
        case destinationFailed
    }

    /// Writes the kept parts, then copies the rest of the request from `source`, keeping it. `upgrading`:
    /// after a protocol switch request the body is raw bytes, never kept, and its HTTP end means nothing.
    mutating func send(
        to destination: NIOAsyncChannelOutboundWriter<HTTPRequestPart>,
        from source: inout NIOAsyncChannelInboundStream<HTTPRequestPart>.AsyncIterator,
        upgrading: Bool
    ) async -> Outcome {
        do {
            for part in self.parts { try await destination.write(part) }
        } catch {
            return .destinationFailed
        }
        if self.ended { return .complete }
        while true {
            let next: HTTPRequestPart?
            do { next = try await source.next() } catch { return .sourceEnded }
            guard let part = next else { return .sourceEnded }
            switch part {
            case .head:
                return .sourceEnded  // a new request before this one ended: protocol error
            case .body(let buffer):
                self.received += buffer.readableBytes
                self.keep(part, bytes: buffer.readableBytes, upgrading: upgrading)
            case .end:
                if upgrading { continue }
                self.keep(.end(nil), bytes: 0, upgrading: false)
                self.ended = true
            }
            // Request trailers never cross: a `sallyport-*`, identity or forwarding field could ride in them,
            // and backends that merge trailers into headers would believe it.
            do { try await destination.write(self.ended ? .end(nil) : part) } catch { return .destinationFailed }
            if self.ended { return .complete }
        }
    }

    private mutating func keep(_ part: HTTPRequestPart, bytes: Int, upgrading: Bool) {
        guard !self.overflowed else { return }
        self.bytes += bytes
        if upgrading || self.bytes > Self.limit {
            self.overflowed = true
            self.parts = []
            return
        }
        self.parts.append(part)
    }
}
