import NIOCore
import NIOPosix

/// Polling helpers for servers the harness starts.
public enum Wait {
    /// Returns once a TCP connection to `host:port` succeeds; throws ``HarnessError`` after `timeout`.
    public static func forPort(_ port: Int, host: String = "127.0.0.1", timeout: Duration) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var lastError: (any Error)?
        while clock.now < deadline {
            do {
                let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .connectTimeout(.milliseconds(500))
                    .connect(host: host, port: port)
                    .get()
                try? await channel.close()
                return
            } catch {
                lastError = error
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw HarnessError(
            .timedOut,
            "nothing accepted TCP connections on \(host):\(port) within \(timeout.seconds)s (last error: \(lastError.map { "\($0)" } ?? "none"))"
        )
    }
}
