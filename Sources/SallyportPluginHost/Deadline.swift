import Synchronization

/// Runs a handler call with a deadline, without waiting for a call that never returns.
///
/// A task group would wait for its child even after the deadline, so the call runs in a task of its own and the
/// caller waits for whichever comes first: its result or the deadline. A call past the deadline is cancelled
/// and abandoned; its late result is dropped. (In process, a handler that ignores cancellation keeps its task
/// until it returns; a plugin host process can be restarted instead.)
public enum Deadline {
    public static func run<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async -> T) async -> T? {
        let race = Race<T>()
        return await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
            race.start(continuation)
            let call = Task {
                let result = await body()
                race.finish(result)
            }
            race.arm(Task {
                try? await Task.sleep(for: limit)
                if race.finish(nil) { call.cancel() }
            })
        }
    }

    /// The first of the call and its deadline to finish resumes the caller; the call's result stops the timer.
    private final class Race<T: Sendable>: Sendable {
        private struct State {
            var continuation: CheckedContinuation<T?, Never>?
            var timer: Task<Void, Never>?
            var done = false
        }
        private let state = Mutex(State())

        func start(_ continuation: CheckedContinuation<T?, Never>) {
            self.state.withLock { $0.continuation = continuation }
        }

        func arm(_ timer: Task<Void, Never>) {
            let done = self.state.withLock { state in
                if !state.done { state.timer = timer }
                return state.done
            }
            if done { timer.cancel() }
        }

        /// Resumes the caller unless it already was; returns whether this call did it.
        @discardableResult
        func finish(_ result: T?) -> Bool {
            let (continuation, timer) = self.state.withLock { state in
                defer { (state.continuation, state.timer, state.done) = (nil, nil, true) }
                return (state.continuation, state.timer)
            }
            guard let continuation else { return false }
            if result != nil { timer?.cancel() }
            continuation.resume(returning: result)
            return true
        }
    }
}
