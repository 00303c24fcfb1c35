/// How far one request/response exchange has come, as a value, with the response head's deadline: armed once
/// the request went out whole, met by the response head; past it the exchange is timed out. A head that comes
/// before the request's end (an early 413) meets it for good. The relay's exchange (`RelayExchange`) and the
/// connector's backend attempt (`BackendAttempt`) each keep one; their handlers arm the timer.
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
