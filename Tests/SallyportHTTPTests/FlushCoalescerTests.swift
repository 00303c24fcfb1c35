import NIOCore
import NIOEmbedded
import SallyportHTTP
import Testing

/// Parts written one by one leave together: one flush per event-loop tick, never later, and never lost to a close.
@Suite struct FlushCoalescerTests {
    func channel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(FlushCoalescer())
        return channel
    }

    func bytes(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    @Test func flushesOfOneTickBecomeOne() throws {
        let channel = try self.channel()
        for part in ["head", "body", "end"] {
            channel.write(self.bytes(part), promise: nil)
            channel.flush()
        }
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil, "nothing leaves before the tick ends")
        channel.embeddedEventLoop.run()
        #expect(try channel.readOutbound(as: ByteBuffer.self) == self.bytes("head"))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == self.bytes("body"))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == self.bytes("end"))
        // And the next tick's flush is its own.
        channel.write(self.bytes("next"), promise: nil)
        channel.flush()
        channel.embeddedEventLoop.run()
        #expect(try channel.readOutbound(as: ByteBuffer.self) == self.bytes("next"))
        _ = try channel.finish()
    }

    @Test func aCloseFlushesWhatIsPendingFirst() throws {
        let channel = try self.channel()
        channel.write(self.bytes("last words"), promise: nil)
        channel.flush()
        try channel.close().wait()
        #expect(try channel.readOutbound(as: ByteBuffer.self) == self.bytes("last words"), "written before the close")
    }
}
