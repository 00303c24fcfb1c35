/// Reconnect delays: exponential from `base`, capped at `cap`, with full jitter; back to `base` once a
/// connection stayed up for `stableAfter`.
public struct Backoff: Sendable {
    /// First delay.
    public var base: Duration
    /// Largest delay.
    public var cap: Duration
    /// A connection that lived this long resets the sequence.
    public var stableAfter: Duration
    private var attempt = 0

    /// Creates a backoff.
    /// The defaults: a relay that restarts has every connector back within 5 s of listening again, and the
    /// first redials of many connectors spread over almost two seconds (0.2–2 s) rather than arriving together.
    public init(base: Duration = .seconds(2), cap: Duration = .seconds(5), stableAfter: Duration = .seconds(30)) {
        self.base = base
        self.cap = cap
        self.stableAfter = stableAfter
    }

    /// The ceiling of the next delay (before jitter).
    public var ceiling: Duration {
        let factor = 1 << min(self.attempt, 20)
        let grown = self.base * factor
        return grown > self.cap ? self.cap : grown
    }

    /// The delay before the next attempt, given how long the last connection lived (zero when it never came up).
    public mutating func next(lastUptime: Duration, random: (ClosedRange<Double>) -> Double = { Double.random(in: $0) }) -> Duration {
        if lastUptime >= self.stableAfter { self.attempt = 0 }
        let ceiling = self.ceiling
        self.attempt += 1
        // Full jitter, but never less than a tenth of the ceiling so a herd still spreads without spinning.
        return ceiling * random(0.1...1.0)
    }
}
