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
