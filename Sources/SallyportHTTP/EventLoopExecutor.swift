public import NIOCore

/// Runs a task's code on one event loop: the loop of the connection the task serves.
///
/// A request task that runs on Swift's global executor hops threads twice for every part it reads or writes: the
/// channel hands the part over from its event loop, the task wakes on a pool thread, and its write goes back to
/// the loop. Given as a task's executor preference (`addTask(executorPreference:)`, inherited by its child
/// tasks), this executor keeps the task on the channel's own loop, so reading a part is a call on the same
/// thread and a write goes straight into the pipeline. The task still suspends as usual; it only resumes where
/// its channel lives.
public final class EventLoopExecutor: TaskExecutor, Sendable {
    public let eventLoop: any EventLoop

    public init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        self.eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
