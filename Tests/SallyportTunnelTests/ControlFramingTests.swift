import HTTPTypes
import NIOCore
import SallyportConfig
import Testing

@testable import SallyportTunnel

@Suite struct ControlFramingTests {
    let allocator = ByteBufferAllocator()

    @Test func roundTripsEveryMessageKind() throws {
        let messages: [ControlMessage] = [
            .hello(.init(connector: "c1", group: "default", software: "0.1.0")),
            .config(.init(generation: 7, apps: [])),
            .configApplied(generation: 7),
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
        var frame = try ControlFraming.encode(.configApplied(generation: 42), allocator: self.allocator)
        var decoder = ControlFrameDecoder()
        while frame.readableBytes > 1 {
            decoder.append(frame.readSlice(length: 1)!)
            #expect(try decoder.next() == nil)
        }
        decoder.append(frame)
        #expect(try decoder.next() == .configApplied(generation: 42))
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
    }
}
