import HTTPTypes
public import NIOCore
public import NIOHTTPTypes

/// Copies a request body from one async channel to another with back-pressure: the relay from the user's
/// connection into a tunnel stream, the connector from the tunnel stream to the backend.
public enum BodyPump {
    /// How copying a request body ended.
    public enum Outcome: Sendable, Equatable {
        /// The request's end was written.
        case complete
        /// The source ended or failed early, sent a second head, or the destination failed.
        case aborted
    }

    /// Copies body parts and the end from `source` to `destination`, starting with `first` when the caller
    /// already read it. `upgrading`: after a protocol switch request the source carries raw bytes, and its
    /// HTTP end means nothing; the copy runs until either side ends.
    public static func copyRequest(
        first: HTTPRequestPart? = nil,
        from source: inout NIOAsyncChannelInboundStream<HTTPRequestPart>.AsyncIterator,
        to destination: NIOAsyncChannelOutboundWriter<HTTPRequestPart>,
        upgrading: Bool
    ) async -> Outcome {
        var pending = first
        do {
            while true {
                let part: HTTPRequestPart
                if let next = pending {
                    part = next
                    pending = nil
                } else if let next = try await source.next() {
                    part = next
                } else {
                    return .aborted
                }
                switch part {
                case .head:
                    return .aborted  // a new request before this one ended: protocol error
                case .body(let buffer):
                    try await destination.write(.body(buffer))
                case .end(let trailers):
                    if upgrading { continue }
                    try await destination.write(.end(trailers))
                    return .complete
                }
            }
        } catch {
            return .aborted
        }
    }
}
