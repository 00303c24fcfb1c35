import Logging
import SallyportConfig
import Synchronization

/// What the relay knows of one tunnel's liveness (from its ``TunnelLivenessHandler``), shared with the registry
/// entry that routes by it, and the log lines when it changes.
final class TunnelHealth: Sendable {
    private let suspect = Atomic<Bool>(false)
    private let state: Mutex<Logger>

    init(logger: Logger, peer: String) {
        var logger = logger
        logger[metadataKey: "tunnel.peer"] = "\(peer)"
        self.state = Mutex(logger)
    }

    /// Set once the connector is known, so that the lines name it.
    var logger: Logger {
        get { self.state.withLock { $0 } }
        set { self.state.withLock { $0 = newValue } }
    }

    var isSuspect: Bool { self.suspect.load(ordering: .relaxed) }

    func observe(_ verdict: TunnelLiveness.Verdict, silence: Duration) {
        switch verdict {
        case .suspect:
            self.suspect.store(true, ordering: .relaxed)
            self.logger.warning("tunnel silent: no new requests go to it while another tunnel answers", metadata: ["silence": "\(silence)"])
        case .alive:
            self.suspect.store(false, ordering: .relaxed)
            self.logger.info("tunnel answers again")
        case .dead:
            self.suspect.store(true, ordering: .relaxed)
            self.logger.warning("tunnel closed: the connector did not answer", metadata: ["silence": "\(silence)"])
        }
    }
}
