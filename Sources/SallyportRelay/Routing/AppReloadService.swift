import Logging
public import ServiceLifecycle

/// Re-reads the app directory every `interval` (changes made without SIGHUP are noticed by themselves); a
/// service of its own in the relay's service group.
public struct AppReloadService: Service {
    let catalog: AppCatalog
    let interval: Duration

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while true {
                try await Task.sleep(for: self.interval)
                self.catalog.reload()
            }
        }
    }
}
