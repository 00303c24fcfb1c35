public import NIOCore
import Synchronization

/// How far one request/response exchange has come, as a value, with the response head's deadline: armed once
/// the request went out whole, met by the response head; past it the exchange is timed out. A head that comes
/// before the request's end (an early 413) meets it for good. The relay's tunnel stream and the connector's
/// backend exchange both keep one.
public struct ExchangeProgress: Sendable, Equatable {
    public enum Answer: Sendable, Equatable {
        /// No response head yet.
        case waiting
        /// The response head arrived: the deadline is met.
        case answered
        /// The deadline passed first.
        case timedOut
    }

    /// The request's end was sent.
    public private(set) var requestSent = false
    public private(set) var answer = Answer.waiting

    public init() {}

    /// The request went out whole; true when the deadline starts now (no answer yet).
    public mutating func requestEnded() -> Bool {
        self.requestSent = true
        return self.answer == .waiting
    }

    /// The response head arrived; false when the deadline had passed first (the exchange is being closed).
    public mutating func headArrived() -> Bool {
        guard self.answer == .waiting else { return self.answer == .answered }
        self.answer = .answered
        return true
    }

    /// The deadline passed; true when that times the exchange out (its channel is then closed).
    public mutating func deadlinePassed() -> Bool {
        guard self.answer == .waiting else { return false }
        self.answer = .timedOut
        return true
    }
}

/// An ``ExchangeProgress`` shared by the tasks and the event loop of one exchange, with its deadline timer:
/// past the deadline it closes `channel`.
public final class ExchangeClock: Sendable {
    private struct State {
        var progress = ExchangeProgress()
        var timer: Scheduled<Void>?
    }

    private let state = Mutex(State())
    private let timeout: Duration
    private let channel: any Channel

    /// The response head is due `timeout` after the request's end; past it `channel` is closed.
    public init(timeout: Duration, channel: any Channel) {
        self.timeout = timeout
        self.channel = channel
    }

    public var progress: ExchangeProgress { self.state.withLock { $0.progress } }
    public var requestSent: Bool { self.progress.requestSent }
    public var answered: Bool { self.progress.answer == .answered }
    public var timedOut: Bool { self.progress.answer == .timedOut }

    /// The request went out whole (or, for a protocol switch, its head did): the deadline starts.
    public func requestEnded() {
        self.state.withLock { state in
            guard state.progress.requestEnded(), state.timer == nil else { return }
            let channel = self.channel
            state.timer = channel.eventLoop.scheduleTask(in: TimeAmount(self.timeout)) { [weak self] in
                guard let self, self.state.withLock({ $0.progress.deadlinePassed() }) else { return }
                channel.close(promise: nil)
            }
        }
    }

    /// The response head arrived; false when the deadline had passed first.
    @discardableResult
    public func headArrived() -> Bool {
        let (met, timer) = self.state.withLock { state in
            defer { state.timer = nil }
            return (state.progress.headArrived(), state.timer)
        }
        timer?.cancel()
        return met
    }

    /// The exchange is over: no deadline any more.
    public func finished() {
        self.state.withLock { state in
            defer { state.timer = nil }
            return state.timer
        }?.cancel()
    }
}
