import NIOCore
import NIOExtras
import NIOPosix

/// One side of a connector–host socket: frames in, frames out.
typealias HostChannel = NIOAsyncChannel<ByteBuffer, ByteBuffer>

extension HostChannel {
    /// Wraps a connected Unix stream socket (taking ownership of `descriptor`) in length-prefixed framing.
    static func open(socket descriptor: CInt, group: any EventLoopGroup) async throws -> HostChannel {
        try await ClientBootstrap(group: group).withConnectedSocket(descriptor) { channel in
            channel.eventLoop.makeCompletedFuture {
                let sync = channel.pipeline.syncOperations
                try sync.addHandler(
                    ByteToMessageHandler(
                        LengthFieldBasedFrameDecoder(lengthFieldBitLength: .fourBytes), maximumBufferSize: HostProtocol.maximumFrame + 4
                    )
                )
                try sync.addHandler(LengthFieldPrepender(lengthFieldBitLength: .fourBytes))
                return try HostChannel(wrappingChannelSynchronously: channel)
            }
        }
    }
}
