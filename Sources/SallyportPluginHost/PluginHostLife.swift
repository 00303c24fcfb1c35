/// A plugin host process's life as a value: starting → serving → ended (crashed or exited) → restarting → serving
/// …, until stopped. ``PluginHost`` carries out what it says; it decides, without processes or clocks of its own,
/// which host is live, when a host that ended starts again, and that nothing starts once the plugin is stopped.
///
/// Restarts: the first after a host that served is at once (a crash costs its apps well under a second); a host
/// that keeps ending waits 0.5 s, then twice as long each time up to 30 s; a host that served for a minute
/// resets the wait. A start that fails waits the same way.
struct PluginHostLife<Connection: AnyObject> {
    enum Phase {
        /// A host process is being started (or waits to be); calls wait for it.
        case starting
        /// `connection` answers calls, since `since`.
        case serving(Connection, since: ContinuousClock.Instant)
        /// The live host ended after serving for `lived` (a crash reported, an exit, a kill): calls wait, and
        /// ``restart()`` says when the next starts.
        case ended(lived: Duration)
        /// The plugin is stopped: no host runs again, calls get no answer.
        case stopped
    }

    /// What the host does next.
    enum Action: Equatable {
        /// Start a host process after `delay`, then call ``started(_:at:)`` or ``startFailed()``.
        case start(after: Duration)
        /// Nothing: the plugin is stopped.
        case none
    }

    static var firstBackoff: Duration { .milliseconds(500) }
    static var maximumBackoff: Duration { .seconds(30) }
    /// A host that served this long resets the backoff.
    static var healthyLife: Duration { .seconds(60) }

    private(set) var phase = Phase.starting
    /// The wait before the next restart.
    private var backoff = Duration.zero

    /// The live host's connection, if one serves.
    var connection: Connection? {
        if case .serving(let connection, _) = self.phase { return connection }
        return nil
    }

    var isStopped: Bool {
        if case .stopped = self.phase { return true }
        return false
    }

    /// A host said hello: it serves from now. False when the plugin was stopped meanwhile: the new host must
    /// be stopped too.
    mutating func started(_ connection: Connection, at now: ContinuousClock.Instant) -> Bool {
        guard case .starting = self.phase else { return false }
        self.phase = .serving(connection, since: now)
        return true
    }

    /// The host `connection` ended (its crash reported, or its exit seen): from now calls wait for the next one.
    /// False when it was not the live host (already ended, or the plugin stopped): nothing changes.
    mutating func hostEnded(_ connection: Connection, at now: ContinuousClock.Instant) -> Bool {
        guard case .serving(let live, let since) = self.phase, live === connection else { return false }
        self.phase = .ended(lived: now - since)
        return true
    }

    /// After a host ended: when the next one starts.
    mutating func restart() -> Action {
        switch self.phase {
        case .stopped, .starting, .serving:
            return .none
        case .ended(let lived):
            if lived >= Self.healthyLife { self.backoff = .zero }
            return self.nextStart()
        }
    }

    /// A start failed (the process did not start, or did not say hello): it is tried again after the backoff.
    mutating func startFailed() -> Action {
        guard case .starting = self.phase else { return .none }
        return self.nextStart()
    }

    /// The plugin stops: returns the live connection, if any, to close.
    mutating func stop() -> Connection? {
        defer { self.phase = .stopped }
        return self.connection
    }

    private mutating func nextStart() -> Action {
        let delay = self.backoff
        self.backoff = min(max(self.backoff * 2, Self.firstBackoff), Self.maximumBackoff)
        self.phase = .starting
        return .start(after: delay)
    }
}
