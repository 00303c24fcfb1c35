import Foundation
import NIOCore
public import SallyportPluginAPI

/// The small framed protocol between a connector and one of its plugin host processes.
///
/// One Unix stream socket per host, the host's standard input and output. Each frame is a 4-byte big-endian
/// length and a JSON message. Both sides come from the same `sallyport` binary, so the messages need no
/// versioning of their own. Calls carry an id and are answered in any order; a host runs them concurrently.
public enum HostProtocol {
    /// Largest frame either side accepts (a request head with 64 KiB Negotiate tokens fits many times).
    public static let maximumFrame = 4 << 20

    /// From the connector to a host.
    public enum ToHost: Codable, Sendable {
        /// Make handler `id` for an app (settings in the app file's order).
        case make(id: UInt64, handler: String, app: String, settings: SettingsMap, logLevel: LogLevel)
        /// The handler is replaced or its app gone: shut it down and forget it.
        case release(id: UInt64)
        case prepare(call: UInt64, handler: UInt64, request: BackendRequest, identity: Identity?, attempt: Int)
        case inspect(call: UInt64, handler: UInt64, response: BackendResponse, request: BackendRequest, identity: Identity?, attempt: Int)
        /// Answered with ``ToConnector/pong(_:)`` from the host's Swift concurrency threads: a host whose threads
        /// are all blocked by its plugin does not answer, and is restarted.
        case ping(UInt64)
    }

    /// From a host to the connector.
    public enum ToConnector: Codable, Sendable {
        /// The library loaded: the plugin's name, version and handlers. First message of a host.
        case hello(plugin: String, version: String, handlers: [HandlerInfo])
        /// The library did not load: why and what to do. The host exits after it.
        case refused(reason: String)
        case made(id: UInt64)
        /// The factory refused the app's settings, or failed: every problem, each at its key when it has one.
        case makeFailed(id: UInt64, errors: [SettingsError], message: String?)
        case prepared(call: UInt64, decision: RequestDecision, request: BackendRequest)
        case inspected(call: UInt64, decision: ResponseDecision, response: BackendResponse)
        /// A call for a handler the host does not know (made before a restart, not yet again).
        case unknownHandler(call: UInt64)
        /// A line a handler logged (already filtered by the app's plugin log level).
        case log(handler: UInt64?, level: LogLevel, message: String, metadata: [String: String])
        case counter(handler: UInt64, name: String, dimensions: [String: String], amount: Int)
        case duration(handler: UInt64, name: String, dimensions: [String: String], seconds: Double)
        case pong(UInt64)
    }

    /// What the connector needs to know of a handler before making any.
    public struct HandlerInfo: Codable, Sendable, Hashable {
        public var name: String
        public var requiresIdentity: Bool
        public var maximumAttempts: Int
    }

    static let encoder = JSONEncoder()
    static let decoder = JSONDecoder()

    /// A message as one frame's payload.
    static func encode<Message: Encodable>(_ message: Message, allocator: ByteBufferAllocator) throws -> ByteBuffer {
        allocator.buffer(bytes: try Self.encoder.encode(message))
    }

    static func decode<Message: Decodable>(_ type: Message.Type, from buffer: ByteBuffer) throws -> Message {
        try Self.decoder.decode(type, from: Data(buffer.readableBytesView))
    }
}
