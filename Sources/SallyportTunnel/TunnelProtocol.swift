import SallyportWire
public import HTTPTypes
import NIOCore
public import NIOHTTP2

/// The tunnel wire protocol between relay and connector. See docs/tunnel-protocol.md.
///
/// The connector dials the relay's tunnel listener over mutually authenticated TLS (ALPN ``alpn``) and then
/// speaks HTTP/2 as the *server*: the relay is the HTTP/2 client and opens one stream per user request, plus
/// one long-lived control stream (``controlPath``) right after the connection is up.
public enum TunnelProtocol {
    /// The ALPN identifier both sides require.
    public static let alpn = "sallyport/1"
    /// The version announced in ``ControlMessage/Hello`` (``ControlMessage/protocolVersion``).
    public static let version = ControlMessage.protocolVersion
    /// Path of the control stream the relay opens on every tunnel connection.
    public static let controlPath = "/.sallyport/v1/control"
    /// Every tunnel-private header starts with this prefix; the relay removes any such header a client sends.
    public static let reservedPrefix = "sallyport-"

    /// Tunnel-private request and response fields.
    public enum Field {
        /// Request: name of the published app.
        public static let app = HTTPField.Name("sallyport-app")!
        /// Request: the user's address as the relay saw it.
        public static let clientAddress = HTTPField.Name("sallyport-client-address")!
        /// Request: an id of the user's connection to the relay (one per HTTP/1.1 or HTTP/2 connection). A
        /// backend connection the user authenticated with NTLM or Negotiate serves only that connection.
        public static let clientConnection = HTTPField.Name("sallyport-client-connection")!
        /// Request: the request id the relay logs; the connector logs it too.
        public static let requestID = HTTPField.Name("sallyport-request-id")!
        /// Request: the protocol the client asked to switch to (`websocket`). HTTP/2 cannot carry `Upgrade`.
        public static let upgrade = HTTPField.Name("sallyport-upgrade")!
        /// Response: the backend switched protocols; the stream now carries raw bytes both ways.
        public static let upgraded = HTTPField.Name("sallyport-upgraded")!
        /// Request: the user the relay authenticated (``IdentityField``); absent for passthrough apps.
        public static let identity = HTTPField.Name("sallyport-identity")!
        /// Response: Sallyport (not the backend) produced this answer; the value is a short reason code.
        public static let error = HTTPField.Name("sallyport-error")!
    }

    /// Whether a header name is tunnel-private: case-insensitive, and `_` counts as `-` (some servers and
    /// frameworks treat `Sallyport_Identity` as `sallyport-identity`).
    public static func isReserved(_ name: HTTPField.Name) -> Bool {
        let canonical = name.canonicalName.utf8
        guard canonical.count >= reservedPrefix.utf8.count else { return false }
        for (byte, expected) in zip(canonical, reservedPrefix.utf8) where byte != expected {
            guard byte == UInt8(ascii: "_"), expected == UInt8(ascii: "-") else { return false }
        }
        return true
    }

    /// Removes every tunnel-private field, whatever its case (the edge does this to what clients send,
    /// the connector to what goes to backends and back).
    public static func removeReserved(_ fields: inout HTTPFields) {
        guard fields.contains(where: { isReserved($0.name) }) else { return }
        fields = HTTPFields(fields.filter { !isReserved($0.name) })
    }

    /// HTTP/2 settings for the tunnel: large windows so one stream is not capped at 64 KiB per round trip,
    /// room for 64 KiB `Authorization: Negotiate` headers, and many concurrent streams.
    ///
    /// NIOHTTP2's abuse limits are made for a connection from the internet, not for a tunnel that lives for days
    /// between two authenticated peers and carries every user's requests. The tunnel's resets mirror what users
    /// do (a user who cancels a request makes the relay reset its tunnel stream), so the defaults would let
    /// users end the tunnel for everyone: more than 200 resets in 30 s, or 200 stream errors over the
    /// connection's whole life (frames of a reset stream still in flight once the 32 remembered resets have
    /// moved on), each end it. The tunnel remembers as many resets as it can have streams, and counts resets
    /// and stream errors over a short window, far above what a relay can produce.
    public static func http2Configuration() -> NIOHTTP2Handler.Configuration {
        var configuration = NIOHTTP2Handler.Configuration()
        configuration.connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: maxConcurrentStreams),
            HTTP2Setting(parameter: .initialWindowSize, value: streamWindow),
            HTTP2Setting(parameter: .maxFrameSize, value: 1 << 16),
            HTTP2Setting(parameter: .maxHeaderListSize, value: maxHeaderListSize),
        ]
        configuration.connection.targetWindowSize = connectionWindow
        configuration.connection.maximumSequentialEmptyDataFrames = 64
        configuration.connection.maximumRecentlyResetStreams = maxConcurrentStreams
        configuration.connection.maximumConnectionGlitches = .max
        configuration.stream.streamResetFrameRateLimit.maximumCount = 2 * maxConcurrentStreams
        configuration.stream.streamResetFrameRateLimit.windowLength = .milliseconds(100)
        configuration.stream.streamErrorRateLimit.maximumCount = 2 * maxConcurrentStreams
        configuration.stream.streamErrorRateLimit.windowLength = .milliseconds(100)
        configuration.stream.targetWindowSize = streamWindow
        configuration.stream.outboundBufferSizeHighWatermark = 256 * 1024
        configuration.stream.outboundBufferSizeLowWatermark = 64 * 1024
        return configuration
    }

    /// Streams either side may have open at once.
    public static let maxConcurrentStreams = 4096
    /// Per-stream flow-control window.
    public static let streamWindow = 512 * 1024
    /// Connection-wide flow-control window.
    public static let connectionWindow = 4 * 1024 * 1024
    /// Largest header block the tunnel accepts (Negotiate tokens can reach 64 KiB).
    public static let maxHeaderListSize = 256 * 1024

    /// Largest response header block a connector sends: the tunnel's limit less room for the fields it adds.
    public static let maxResponseHeaderListSize = maxHeaderListSize - 4096

    /// A header block's size as HTTP/2 counts it against SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113, 6.5.2):
    /// each field's name and value, plus 32.
    public static func headerListSize(_ fields: HTTPFields) -> Int {
        fields.reduce(0) { $0 + $1.name.rawName.utf8.count + $1.value.utf8.count + 32 }
    }
}
