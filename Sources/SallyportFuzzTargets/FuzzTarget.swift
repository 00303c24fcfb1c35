public import Foundation
import NIOCore
import SallyportConfig
import SallyportPluginAPI
import SallyportWire

/// The parsers that read bytes Sallyport does not control: config files an administrator writes, and what
/// one tunnel peer sends the other. Each must return a value or a clear error for any input: no crash, no
/// hang, no unbounded allocation. `scripts/fuzz.sh` runs them under libFuzzer; the unit tests replay their
/// corpus (`Tests/Fuzz/corpus/<target>`) in every run.
public enum FuzzTarget: String, CaseIterable, Sendable {
    case appFile = "app-file"
    case relayFile = "relay-file"
    case connectorFile = "connector-file"
    /// The control stream as the relay or a connector reads it: length-prefixed JSON frames, arriving in pieces.
    case controlStream = "control-stream"
    /// The `sallyport-identity` tunnel field a connector decodes.
    case identityField = "identity-field"

    /// Runs one input. Traps (and so reports) only on a broken invariant: a decoded control message must
    /// encode and decode to itself.
    public func run(_ bytes: UnsafeRawBufferPointer) {
        switch self {
        case .appFile:
            _ = try? ConfigLoader.parseApp(yaml: String(decoding: bytes, as: UTF8.self), file: "/fuzz/apps/app.yaml")
        case .relayFile:
            _ = try? ConfigLoader.parseRelay(yaml: String(decoding: bytes, as: UTF8.self), file: "/fuzz/relay.yaml")
        case .connectorFile:
            _ = try? ConfigLoader.parseConnector(yaml: String(decoding: bytes, as: UTF8.self), file: "/fuzz/connector.yaml")
        case .controlStream:
            Self.readControlStream(bytes)
        case .identityField:
            if let identity = IdentityField.decode(String(decoding: bytes, as: UTF8.self)) {
                precondition(IdentityField.decode(IdentityField.encode(identity)) == identity, "identity does not round-trip")
            }
        }
    }

    /// Feeds the bytes in two pieces (split where the first byte says), as a network would.
    private static func readControlStream(_ bytes: UnsafeRawBufferPointer) {
        var decoder = ControlFrameDecoder()
        let split = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
        for piece in [bytes[..<split], bytes[split...]] {
            decoder.append(ByteBuffer(bytes: piece))
            while true {
                let message: ControlMessage?
                do { message = try decoder.next() } catch { return }
                guard let message else { break }
                guard let frame = try? ControlFraming.encode(message, allocator: ByteBufferAllocator()) else { continue }
                var again = ControlFrameDecoder()
                again.append(frame)
                precondition((try? again.next()) == message, "control message does not round-trip: \(message)")
            }
        }
    }
}

extension FuzzTarget {
    /// Seed inputs the fuzzer starts from: each kind of control message, identity fields, and the example
    /// config files (`config/`), so mutations begin from the shapes real peers and administrators produce.
    public func seeds(configDirectory: String) throws -> [String: Data] {
        switch self {
        case .appFile:
            let apps = configDirectory + "/apps"
            return try Dictionary(uniqueKeysWithValues: FileManager.default.contentsOfDirectory(atPath: apps).sorted().map {
                ($0, try Data(contentsOf: URL(fileURLWithPath: apps + "/" + $0)))
            })
        case .relayFile:
            return ["relay.yaml": try Data(contentsOf: URL(fileURLWithPath: configDirectory + "/relay.yaml"))]
        case .connectorFile:
            return ["connector.yaml": try Data(contentsOf: URL(fileURLWithPath: configDirectory + "/connector.yaml"))]
        case .controlStream:
            let version = ConfigVersion(epoch: 7, generation: 3)
            let apps = [
                ConnectorApp(
                    name: "wiki", externalPathPrefix: "/hr/", internalURL: try InternalURL(parsing: "http://wiki.corp.example:8080/"),
                    sendsIdentity: true, sso: ConnectorApp.SSO(handler: "header", settings: ["userHeader": .string("X-User")])
                )
            ]
            let messages: [String: ControlMessage] = [
                "hello": .hello(.init(connector: "c1", host: "host-1", software: "0.1.0")),
                "welcome": .welcome(.init(connectorID: "cn-1", name: "c1", group: "default", renewable: true)),
                "welcome-relays": .welcome(
                    .init(
                        connectorID: "cn-1", name: "c1", group: "default", renewable: true, time: 1_750_000_000,
                        relays: [.init(address: "relay-a.example.com:8443", serverName: "relay-a.example.com")]
                    )
                ),
                "relays": .relays([.init(address: "relay-a.example.com:8443", serverName: "relay-a.example.com"), .init(address: "[2001:db8::1]:8443", serverName: "relay-b")]),
                "config": .config(.init(version: version, apps: apps)),
                "config-applied": .configApplied(version),
                "refresh": .refresh,
                "draining": .draining,
                "renew": .renew("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"),
                "certificate": .certificate("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
                "reconnect": .reconnect("moved to group b"),
                "kcd-flush": .kcdFlush(user: "alice@CORP.EXAMPLE"),
                "error": .error("something failed"),
            ]
            var seeds: [String: Data] = [:]
            for (name, message) in messages {
                let frame = try ControlFraming.encode(message, allocator: ByteBufferAllocator())
                seeds[name] = Data(frame.readableBytesView)
            }
            // Two messages in one stream.
            seeds["two-messages"] = seeds["hello"]! + seeds["refresh"]!
            return seeds
        case .identityField:
            let identity = Identity(
                userPrincipalName: "alice@corp.example", subject: "s-1", issuer: "https://idp.example", provider: "corp",
                email: "alice@corp.example", displayName: "Alice", groups: ["staff", "Ünïcode"], claims: ["dept": ["7"]]
            )
            return ["identity": Data(IdentityField.encode(identity).utf8)]
        }
    }
}
