/// One tunnelled request's way to its backend as a value: prepare (the SSO handler) → send on a pooled or new
/// connection → the handler inspects the answer → done, or send again. ``BackendForwarder`` carries out the
/// actions; this type decides, without I/O, when a request may go again and on what.
///
/// - The handler may ask for a request to be sent again (a `401` challenge) only if it has no body (a body is
///   streamed once and cannot be replayed), is no protocol switch, and the handler's attempts are not used up.
/// - A request without a body that meets a reused connection the backend had just closed (no answer, no
///   timeout) goes again once, on a new connection, per handler attempt.
struct BackendExchange: Sendable {
    /// What the forwarder does next.
    enum Action: Sendable, Equatable {
        /// Let the SSO handler prepare this attempt, then call ``prepared()``.
        case prepare(attempt: Int)
        /// Send the request, on a new connection when `fresh`, then call ``sent(_:)``.
        case send(fresh: Bool)
        /// Answer the user with a failure: the backend timed out, or closed without answering.
        case fail(timedOut: Bool)
        /// The user has an answer.
        case finish
    }

    /// How one send ended.
    enum Outcome: Sendable, Equatable {
        /// The user got an answer (complete, truncated or upgraded).
        case answered
        /// The handler wants the request again; its answer was discarded.
        case retryRequested
        /// Nothing reached the user; `reused`: the connection came from the pool.
        case failedBeforeAnswer(timedOut: Bool, reused: Bool)
    }

    let hasBody: Bool
    let upgrading: Bool
    /// 0 without a handler.
    let maximumAttempts: Int
    private(set) var attempt = 1
    private var resentOnFreshConnection = false

    init(hasBody: Bool, upgrading: Bool, handlerAttempts: Int?) {
        self.hasBody = hasBody
        self.upgrading = upgrading
        self.maximumAttempts = handlerAttempts.map { max(1, $0) } ?? 0
    }

    /// Whether a `.retry` from the handler for the current attempt will be honoured.
    var retryPossible: Bool { self.retryImpossibility == nil }

    /// Why a `.retry` for the current attempt would not be honoured, for the log; nil when it would.
    var retryImpossibility: String? {
        if self.hasBody { return "the request has a body, which is streamed once" }
        if self.upgrading { return "the request switches protocols" }
        if self.attempt >= self.maximumAttempts { return "the handler's \(self.maximumAttempts) attempts are used up" }
        return nil
    }

    func start() -> Action {
        self.maximumAttempts > 0 ? .prepare(attempt: self.attempt) : .send(fresh: false)
    }

    /// The handler let the request go.
    func prepared() -> Action {
        .send(fresh: self.resentOnFreshConnection)
    }

    mutating func sent(_ outcome: Outcome) -> Action {
        switch outcome {
        case .answered:
            return .finish
        case .retryRequested:
            guard self.retryPossible else { return .finish }
            self.attempt += 1
            // The next attempt may again meet a pooled connection the backend has just closed.
            self.resentOnFreshConnection = false
            return .prepare(attempt: self.attempt)
        case .failedBeforeAnswer(let timedOut, let reused):
            guard !timedOut, reused, !self.hasBody, !self.upgrading, !self.resentOnFreshConnection else { return .fail(timedOut: timedOut) }
            self.resentOnFreshConnection = true
            return self.maximumAttempts > 0 ? .prepare(attempt: self.attempt) : .send(fresh: true)
        }
    }
}
