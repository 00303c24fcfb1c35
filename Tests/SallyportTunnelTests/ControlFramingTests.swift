import Foundation
import HTTPTypes
import NIOCore
import SallyportConfig
import SallyportHTTP
import SallyportPluginAPI
import Testing

@testable import SallyportTunnel
import SallyportWire

@Suite struct ControlFramingTests {
    let allocator = ByteBufferAllocator()

    @Test func roundTripsEveryMessageKind() throws {
        let messages: [ControlMessage] = [
            .hello(.init(connector: "c1", host: "host1", software: "0.1.0")),
            .welcome(.init(connectorID: "c-abc", name: "c1", group: "default", renewable: true)),
            .renew("-----BEGIN CERTIFICATE REQUEST-----\n"),
            .certificate("-----BEGIN CERTIFICATE-----\n"),
            .reconnect("moved to group b"),
            .kcdFlush(user: "alice@corp.example.com"),
            .kcdFlush(user: nil),
            .config(.init(version: ConfigVersion(epoch: 3, generation: 7), apps: [])),
            .configApplied(ConfigVersion(epoch: 3, generation: 7)),
            .refresh,
            .draining,
            .error("nope"),
        ]
        var decoder = ControlFrameDecoder()
        for message in messages {
            decoder.append(try ControlFraming.encode(message, allocator: self.allocator))
        }
        var decoded: [ControlMessage] = []
        while let message = try decoder.next() { decoded.append(message) }
        #expect(decoded == messages)
    }

    @Test func waitsForSplitFrames() throws {
        var frame = try ControlFraming.encode(.configApplied(ConfigVersion(epoch: 1, generation: 42)), allocator: self.allocator)
        var decoder = ControlFrameDecoder()
        while frame.readableBytes > 1 {
            decoder.append(frame.readSlice(length: 1)!)
            #expect(try decoder.next() == nil)
        }
        decoder.append(frame)
        #expect(try decoder.next() == .configApplied(ConfigVersion(epoch: 1, generation: 42)))
        #expect(try decoder.next() == nil)
    }

    @Test func rejectsOversizedAndMalformedFrames() throws {
        var huge = self.allocator.buffer(capacity: 4)
        huge.writeInteger(UInt32(ControlFraming.maxMessageSize + 1))
        var decoder = ControlFrameDecoder()
        decoder.append(huge)
        #expect(throws: ControlProtocolError.self) { try decoder.next() }

        var garbage = self.allocator.buffer(capacity: 8)
        garbage.writeInteger(UInt32(3))
        garbage.writeString("{x}")
        var second = ControlFrameDecoder()
        second.append(garbage)
        #expect(throws: ControlProtocolError.self) { try second.next() }
    }

    @Test func reservedFieldsAreCaseInsensitive() {
        #expect(TunnelProtocol.isReserved(.init("Sallyport-App")!))
        #expect(TunnelProtocol.isReserved(.init("SALLYPORT-IDENTITY")!))
        #expect(!TunnelProtocol.isReserved(.init("X-Sallyport")!))
        #expect(TunnelProtocol.isReserved(.init("sallyport_identity")!), "underscore spellings are reserved too")
        #expect(TunnelProtocol.isReserved(.init("Sallyport_App")!))
        #expect(!TunnelProtocol.isReserved(.init("sallyport")!))
        #expect(!TunnelProtocol.isReserved(.init("sallyportx-app")!))
    }

    @Test func identityCrossesAsOneOpaqueField() throws {
        let identity = Identity(
            userPrincipalName: "zoë@corp.example", subject: "s", issuer: "https://i", provider: "corp",
            email: "z@corp.example", displayName: "Zoë \"Z\" Ünlü", groups: ["a,b", "ç"], claims: ["dept": ["x"]]
        )
        let value = IdentityField.encode(identity)
        #expect(value.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })
        #expect(IdentityField.decode(value) == identity)
        #expect(IdentityField.decode("not base64 json!") == nil)
        #expect(IdentityField.decode(Base64URL.encode(Data("{}".utf8))) == nil)
    }
}
