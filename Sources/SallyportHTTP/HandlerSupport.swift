public import NIOCore

/// Back-pressure by holding reads, in the manner of swift-nio-examples' `GlueHandler`: a handler passes a `read`
/// on only while the channel it feeds can take more, and passes a held one on once it can. (It says when; the
/// handler calls `context.read()` itself, outside any access to the gate: a read can come straight back.)
public struct ReadGate {
    private var pending = false

    public init() {}

    /// A read asks to pass: true when it goes on now (`open`); else it is held.
    public mutating func read(open: Bool) -> Bool {
        if !open { self.pending = true }
        return open
    }

    /// Whether a held read goes on now that the gate is `open`.
    public mutating func reopen(open: Bool) -> Bool {
        guard open, self.pending else { return false }
        self.pending = false
        return true
    }
}

extension EventLoop {
    /// Runs `task` at once when called on this loop, else queues it there (in order with other queued work).
    public func executeNowOrLater(_ task: @escaping @Sendable () -> Void) {
        if self.inEventLoop {
            task()
        } else {
            self.execute(task)
        }
    }
}

/// Work of a channel's handler that must wait for I/O (a provider's keys, a plugin's call).
public enum OffLoop {
    /// Runs `work` in a task, then `then` with its value on `loop`.
    ///
    /// Unstructured: the work belongs to a request that lives in a channel's handler rather than in a task, and
    /// its result goes back to that handler's event loop, where a request that ended meanwhile ignores it.
    public static func run<Value: Sendable>(
        _ work: @escaping @Sendable () async -> Value, thenOn loop: any EventLoop, _ then: @escaping @Sendable (Value) -> Void
    ) {
        Task {
            let value = await work()
            loop.execute { then(value) }
        }
    }
}

/// Closing a channel only after its final part left.
public enum GracefulClose {
    /// Closes `channel` once `last` (its last write) completed, or after `timeout` for a peer that never reads it.
    /// Closing at once would cut the tail (an HTTP/2 stream: RST_STREAM). Call on the channel's event loop.
    public static func close(_ channel: any Channel, after last: EventLoopFuture<Void>?, timeout: TimeAmount = .seconds(30)) {
        let last = last ?? channel.eventLoop.makeSucceededVoidFuture()
        let timer = channel.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
        last.whenComplete { _ in
            timer.cancel()
            channel.close(promise: nil)
        }
    }
}
