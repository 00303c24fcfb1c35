import Logging
public import ServiceLifecycle
import UnixSignals

/// Makes again every SSO handler whose factory failed: every ``interval`` and at once on SIGHUP, so an app whose
/// handler needed a file that was missing is served as soon as the file is there, without a settings change.
public struct HandlerRecoveryService: Service {
    let apps: AppTable
    /// How often failed handlers are tried again.
    public static let interval = Duration.seconds(10)

    public func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask {
                while !Task.isCancelled, !Task.isShuttingDownGracefully {
                    try? await cancelWhenGracefulShutdown { try await Task.sleep(for: Self.interval) }
                    guard !Task.isCancelled, !Task.isShuttingDownGracefully else { return }
                    await self.apps.retryUnavailable()
                }
            }
            group.addTask {
                for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
                    await self.apps.retryUnavailable()
                }
            }
        }
    }
}
