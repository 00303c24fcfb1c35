/// How each side of a tunnel tells a live peer from a silent one: it sends an HTTP/2 PING every `interval` and
/// counts any byte read (the PING's acknowledgement included) as a sign of life. Quiet for longer than
/// `interval` plus a grace makes the tunnel *suspect* (the relay stops routing to it); quiet for `timeout` makes
/// it dead, and it is closed at once. The relay's `tunnel.liveness` and the connector's `liveness`.
public struct TunnelLiveness: Sendable, Hashable {
    /// `interval`: how often a PING goes out. Default 5s.
    public var interval: Duration
    /// `timeout`: how long a silent tunnel lives. Default 15s.
    public var timeout: Duration

    public init(interval: Duration = .seconds(5), timeout: Duration = .seconds(15)) {
        self.interval = interval
        self.timeout = timeout
    }

    /// Silence longer than this makes a tunnel suspect: one PING interval and the time its answer may take.
    public var suspectAfter: Duration { self.interval + min(.seconds(2), self.interval) }

    /// What the silence so far means.
    public enum Verdict: Sendable, Equatable {
        case alive
        case suspect
        case dead
    }

    public func verdict(silence: Duration) -> Verdict {
        if silence >= self.timeout { return .dead }
        if silence >= self.suspectAfter { return .suspect }
        return .alive
    }
}

extension ValueNode {
    /// A `liveness` mapping: `interval` from 1s to 60s, `timeout` at least twice the interval and at most 10m.
    func liveness() throws(ConfigError) -> TunnelLiveness {
        var reader = try self.mapping()
        let defaults = TunnelLiveness()
        let interval = reader.optional("interval", default: defaults.interval) { value throws(ConfigError) in
            let duration = try value.duration()
            guard duration >= .seconds(1), duration <= .seconds(60) else { throw value.error("must be from 1s to 60s") }
            return duration
        }
        let timeout = reader.optional("timeout", default: defaults.timeout) { value throws(ConfigError) in
            let duration = try value.duration()
            guard duration >= interval * 2 else {
                throw value.error("must be at least twice liveness.interval (\(ConfigDuration.format(interval))), so that one lost PING does not close a tunnel")
            }
            guard duration <= .seconds(600) else { throw value.error("must be at most 10m") }
            return duration
        }
        reader.finish()
        return TunnelLiveness(interval: interval, timeout: timeout)
    }
}
