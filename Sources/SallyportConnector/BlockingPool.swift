import NIOPosix

/// The connector's one place for blocking work (KDC exchanges, GSS calls, plugin file reads): NIO's blocking
/// thread pool, never an event loop or the concurrency pool.
enum BlockingPool {
    /// Runs `work` on the pool.
    static let executor: @Sendable (@escaping @Sendable () -> Void) -> Void = { work in
        NIOThreadPool.singleton.submit { _ in work() }
    }

    /// Runs `work` on the pool and returns its result.
    static func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            self.executor { continuation.resume(returning: work()) }
        }
    }
}
