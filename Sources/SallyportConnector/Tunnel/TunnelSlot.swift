/// One of the connector's `connections` tunnel slots, as a value: which connection serves, which is being
/// dialled to replace it, and which are draining. A replacement (after certificate renewal, or when the relay
/// asks after a move) is made before the old connection is drained, so the slot never stops serving.
struct TunnelSlot: Sendable {
    enum Action: Equatable, Sendable {
        /// Dial connection `id` after `delay`.
        case dial(id: Int, after: Duration)
        /// Send the drain notice on connection `id`; it closes once its requests finish.
        case drain(id: Int)
        /// Shutting down and nothing is open any more.
        case finish
    }

    /// The connection that serves.
    private(set) var active: Int?
    /// The connection being dialled (or connected but not yet configured).
    private(set) var pending: Int?
    /// Connections told to drain, not yet closed.
    private(set) var retiring: Set<Int> = []
    private(set) var stopping = false
    private var nextID = 0
    private var backoff: Backoff

    init(backoff: Backoff = Backoff()) {
        self.backoff = backoff
    }

    /// The first dial.
    mutating func start() -> [Action] { [self.dial(after: .zero)] }

    /// Connection `id` has its configuration: it serves, and the one it replaces drains.
    mutating func ready(_ id: Int) -> [Action] {
        guard id == self.pending else { return [] }
        self.pending = nil
        var actions: [Action] = []
        if let old = self.active {
            self.retiring.insert(old)
            actions.append(.drain(id: old))
        }
        self.active = id
        if self.stopping { actions.append(.drain(id: id)) }
        return actions
    }

    /// Connection `id` failed to dial or closed after `uptime`.
    mutating func ended(_ id: Int, uptime: Duration) -> [Action] {
        let wasPending = id == self.pending
        let wasActive = id == self.active
        self.retiring.remove(id)
        if wasPending { self.pending = nil }
        if wasActive { self.active = nil }
        if self.stopping {
            return self.active == nil && self.pending == nil && self.retiring.isEmpty ? [.finish] : []
        }
        // A dial that failed (first, reconnect or replacement; an active connection keeps serving meanwhile), or
        // the serving connection closed with nothing on its way: dial again after the backoff.
        if wasPending || (wasActive && self.pending == nil) {
            return [self.dial(after: self.backoff.next(lastUptime: uptime))]
        }
        return []
    }

    /// New connections are wanted (renewed certificate, or the relay asked): dial one unless one is on its way.
    mutating func rollRequested() -> [Action] {
        guard !self.stopping, self.pending == nil else { return [] }
        return [self.dial(after: .zero)]
    }

    /// The slot is no longer wanted (its relay left the relay list) while the connector runs on: no more dials,
    /// and its connections are told to drain.
    mutating func retire() -> [Action] {
        self.stopping = true
        var actions: [Action] = []
        for id in [self.active, self.pending].compactMap({ $0 }) {
            self.retiring.insert(id)
            actions.append(.drain(id: id))
        }
        self.active = nil
        self.pending = nil
        return self.retiring.isEmpty ? [.finish] : actions
    }

    /// Graceful shutdown: no more dials; open connections drain by themselves.
    mutating func shutdown() -> [Action] {
        self.stopping = true
        return self.active == nil && self.pending == nil && self.retiring.isEmpty ? [.finish] : []
    }

    private mutating func dial(after delay: Duration) -> Action {
        let id = self.nextID
        self.nextID += 1
        self.pending = id
        return .dial(id: id, after: delay)
    }
}
