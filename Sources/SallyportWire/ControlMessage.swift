import Foundation
public import NIOCore
public import SallyportConfig

/// A message on the control stream. Each is sent as a 4-byte big-endian length followed by that many bytes
/// of JSON: `{"type": "hello", "hello": {...}}`.
public enum ControlMessage: Sendable, Equatable {
    /// The tunnel protocol version announced in ``Hello``. 2: configuration versions carry the relay's epoch,
    /// and apps cross as ``ConnectorApp``. 3: the relay's registry names the connector and its group
    /// (``Welcome``); certificates are renewed and connections rolled over the control stream. 4: the welcome
    /// lists every relay sharing the relay's store, and ``relays(_:)`` updates the list.
    public static let protocolVersion = 4
    /// The oldest version a relay still serves: a connector of version 3 gets no relay list.
    public static let oldestProtocolVersion = 3

    /// Connector → relay, first message: what is connecting (its identity is its certificate's).
    case hello(Hello)
    /// Relay → connector, the answer to hello: who the relay's registry says it is.
    case welcome(Welcome)
    /// Relay → connector: the complete set of apps of the connector's group.
    case config(AppSet)
    /// Connector → relay: the connector now serves the configuration of this version (the newest it holds).
    case configApplied(ConfigVersion)
    /// Connector → relay: send the config again (the periodic refresh).
    case refresh
    /// Connector → relay: shutting down; send no new requests on this connection.
    case draining
    /// Connector → relay: a PEM certificate signing request for a new key; the relay answers ``certificate(_:)``.
    case renew(String)
    /// Relay → connector: a renewed certificate (PEM, leaf then CA) for the key of the last ``renew(_:)``.
    case certificate(String)
    /// Relay → connector: open new tunnel connections, then drain this one (the connector was moved to another
    /// group, or the relay wants fresh connections). The text says why, for logs.
    case reconnect(String)
    /// Relay → connector: drop the cached Kerberos tickets of one user (nil: of every user), so the next request
    /// asks the KDC (`sallyport kcd flush`).
    case kcdFlush(user: String?)
    /// Relay → connector (version 4 on): the relays sharing this relay's store changed; the connector keeps
    /// tunnels to each of them.
    case relays([RelayEndpoint])
    /// Either way: a fatal problem; the sender closes the connection after it. `code` (from version 4, optional:
    /// older peers ignore it) names it for the program: `not-registered` means the relay's registry has no such
    /// connector, so dialling again will not help.
    case error(String, code: String? = nil)

    /// A relay a connector can dial.
    public struct RelayEndpoint: Sendable, Codable, Hashable, CustomStringConvertible {
        /// `host:port` of its tunnel listener.
        public var address: String
        /// The name its tunnel certificate carries.
        public var serverName: String

        /// Creates an endpoint.
        public init(address: String, serverName: String) {
            self.address = address
            self.serverName = serverName
        }

        public var description: String { self.address }
    }

    /// The connector's introduction.
    public struct Hello: Sendable, Codable, Equatable {
        /// Tunnel protocol version the connector speaks.
        public var protocolVersion: Int
        /// The connector's name, for logs (the relay's registry has the one that counts).
        public var connector: String
        /// The connector's host name, for `sallyport connectors list`.
        public var host: String
        /// The software version, for logs and status.
        public var software: String

        /// Creates a hello.
        public init(protocolVersion: Int = ControlMessage.protocolVersion, connector: String, host: String, software: String) {
            self.protocolVersion = protocolVersion
            self.connector = connector
            self.host = host
            self.software = software
        }
    }

    /// The relay's word on who the connector is.
    public struct Welcome: Sendable, Codable, Equatable {
        /// The connector's id (its certificate's).
        public var connectorID: String
        /// Its registered name.
        public var name: String
        /// The group whose apps it serves.
        public var group: String
        /// Whether the relay renews this connector's certificate (it issued it); false for a certificate from the
        /// administrator's own PKI, which is renewed there.
        public var renewable: Bool
        /// The relay's clock when it sent the welcome (seconds since 1970), for `sallyport doctor`'s clock check.
        public var time: Double?
        /// Every relay sharing this relay's store, this one included (version 4 on; nil from older relays).
        public var relays: [RelayEndpoint]?

        /// Creates a welcome.
        public init(connectorID: String, name: String, group: String, renewable: Bool, time: Double? = nil, relays: [RelayEndpoint]? = nil) {
            self.connectorID = connectorID
            self.name = name
            self.group = group
            self.renewable = renewable
            self.time = time
            self.relays = relays
        }
    }

    /// The apps of one group at one configuration version.
    public struct AppSet: Sendable, Codable, Equatable {
        /// The relay's epoch and generation.
        public var version: ConfigVersion
        /// The apps, as connectors see them.
        public var apps: [ConnectorApp]

        /// Creates an app set.
        public init(version: ConfigVersion, apps: [ConnectorApp]) {
            self.version = version
            self.apps = apps
        }
    }
}

extension ControlMessage: Codable {
    private enum CodingKeys: String, CodingKey { case type, hello, welcome, config, version, message, pem, user, relays, code }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let type = try container.decode(String.self, forKey: .type)
        switch type {
        case "hello": self = .hello(try container.decode(Hello.self, forKey: .hello))
        case "welcome": self = .welcome(try container.decode(Welcome.self, forKey: .welcome))
        case "renew": self = .renew(try container.decode(String.self, forKey: .pem))
        case "certificate": self = .certificate(try container.decode(String.self, forKey: .pem))
        case "reconnect": self = .reconnect(try container.decode(String.self, forKey: .message))
        case "kcdFlush": self = .kcdFlush(user: try container.decodeIfPresent(String.self, forKey: .user))
        case "config": self = .config(try container.decode(AppSet.self, forKey: .config))
        case "configApplied": self = .configApplied(try container.decode(ConfigVersion.self, forKey: .version))
        case "refresh": self = .refresh
        case "draining": self = .draining
        case "relays": self = .relays(try container.decode([RelayEndpoint].self, forKey: .relays))
        case "error": self = .error(try container.decode(String.self, forKey: .message), code: try container.decodeIfPresent(String.self, forKey: .code))
        default:
            throw DecodingError.dataCorruptedError(forKey: .type, in: container, debugDescription: "unknown control message type \(type)")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .hello(let hello):
            try container.encode("hello", forKey: .type)
            try container.encode(hello, forKey: .hello)
        case .welcome(let welcome):
            try container.encode("welcome", forKey: .type)
            try container.encode(welcome, forKey: .welcome)
        case .renew(let pem):
            try container.encode("renew", forKey: .type)
            try container.encode(pem, forKey: .pem)
        case .certificate(let pem):
            try container.encode("certificate", forKey: .type)
            try container.encode(pem, forKey: .pem)
        case .reconnect(let reason):
            try container.encode("reconnect", forKey: .type)
            try container.encode(reason, forKey: .message)
        case .kcdFlush(let user):
            try container.encode("kcdFlush", forKey: .type)
            try container.encodeIfPresent(user, forKey: .user)
        case .config(let set):
            try container.encode("config", forKey: .type)
            try container.encode(set, forKey: .config)
        case .configApplied(let version):
            try container.encode("configApplied", forKey: .type)
            try container.encode(version, forKey: .version)
        case .refresh:
            try container.encode("refresh", forKey: .type)
        case .draining:
            try container.encode("draining", forKey: .type)
        case .relays(let relays):
            try container.encode("relays", forKey: .type)
            try container.encode(relays, forKey: .relays)
        case .error(let message, let code):
            try container.encode("error", forKey: .type)
            try container.encode(message, forKey: .message)
            try container.encodeIfPresent(code, forKey: .code)
        }
    }
}

/// A malformed control stream. The receiver closes the tunnel connection and logs this.
public struct ControlProtocolError: Error, CustomStringConvertible, Sendable {
    /// What was wrong.
    public var description: String
    /// Creates an error.
    public init(description: String) { self.description = description }
}

/// Frames control messages: a 4-byte big-endian length, then JSON.
public enum ControlFraming {
    /// The largest control message accepted (a config push of thousands of apps fits easily).
    public static let maxMessageSize = 16 * 1024 * 1024

    /// Keys sorted: the same message is always the same bytes (stable seeds for the fuzzer, readable captures).
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return encoder
    }()

    /// Encodes one message into a frame.
    public static func encode(_ message: ControlMessage, allocator: ByteBufferAllocator) throws -> ByteBuffer {
        let json = try Self.encoder.encode(message)
        var buffer = allocator.buffer(capacity: json.count + 4)
        buffer.writeInteger(UInt32(json.count))
        buffer.writeBytes(json)
        return buffer
    }
}

/// Accumulates bytes of the control stream and yields complete messages.
public struct ControlFrameDecoder: Sendable {
    private var buffer: ByteBuffer?

    /// Creates an empty decoder.
    public init() {}

    /// Adds received bytes.
    public mutating func append(_ bytes: ByteBuffer) {
        if self.buffer == nil {
            self.buffer = bytes
        } else {
            var bytes = bytes
            self.buffer!.writeBuffer(&bytes)
        }
    }

    /// The next complete message, or nil when more bytes are needed.
    public mutating func next() throws(ControlProtocolError) -> ControlMessage? {
        guard var buffer = self.buffer, let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else {
            return nil
        }
        guard Int(length) <= ControlFraming.maxMessageSize else {
            throw ControlProtocolError(description: "control message of \(length) bytes exceeds the \(ControlFraming.maxMessageSize)-byte limit")
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        let slice = buffer.readSlice(length: Int(length))!
        self.buffer = buffer.readableBytes == 0 ? nil : buffer
        do {
            return try JSONDecoder().decode(ControlMessage.self, from: Data(slice.readableBytesView))
        } catch {
            throw ControlProtocolError(description: "malformed control message: \(error)")
        }
    }
}
