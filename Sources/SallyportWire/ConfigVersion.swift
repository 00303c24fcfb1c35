/// Which app configuration a relay sent: its epoch (one per relay process) and the generation within it.
///
/// Generations count up from 1 each time a relay starts, so they only order pushes of the same epoch. A
/// connector takes a push of another epoch as the truth (the relay restarted), and within an epoch only a
/// push at least as new as what it holds.
public struct ConfigVersion: Sendable, Codable, Hashable, CustomStringConvertible {
    /// Random per relay process.
    public var epoch: UInt64
    /// Increases with every change of the relay's apps.
    public var generation: UInt64

    /// Creates a version.
    public init(epoch: UInt64, generation: UInt64) {
        self.epoch = epoch
        self.generation = generation
    }

    /// A new relay process's epoch.
    public static func newEpoch() -> UInt64 { UInt64.random(in: 1...UInt64.max) }

    /// Whether a connector holding `self` should apply a push of `pushed`.
    public func isSuperseded(by pushed: ConfigVersion) -> Bool {
        pushed.epoch != self.epoch || pushed.generation >= self.generation
    }

    public var description: String { "\(String(self.epoch, radix: 16))/\(self.generation)" }
}
