import NIOCore
import NIOPosix
import SallyportHTTP
import Testing

/// A task that prefers a connection's event loop runs there, and so do its child tasks, after every suspension.
@Suite struct EventLoopExecutorTests {
    @Test func aTaskAndItsChildrenRunOnTheLoopThroughSuspensions() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let loops = [group.next(), group.next()]
        #expect(loops[0] !== loops[1])
        for (index, loop) in loops.enumerated() {
            let other = loops[1 - index]
            let seen = await withTaskGroup(of: [Bool].self) { tasks in
                tasks.addTask(executorPreference: EventLoopExecutor(loop)) {
                    var seen = [loop.inEventLoop]
                    // A suspension that the other loop's thread ends.
                    try? await other.scheduleTask(in: .milliseconds(5)) {}.futureResult.get()
                    seen.append(loop.inEventLoop)
                    await Task.yield()
                    seen.append(loop.inEventLoop)
                    // A child task inherits the preference.
                    let child = await withTaskGroup(of: Bool.self) { children in
                        children.addTask { loop.inEventLoop }
                        return await children.next() ?? false
                    }
                    seen.append(child)
                    return seen
                }
                return await tasks.next() ?? []
            }
            #expect(seen == [true, true, true, true])
        }
        // Without the preference, a task runs on Swift's pool, on no loop.
        let onNoLoop = await Task.detached { MultiThreadedEventLoopGroup.currentEventLoop == nil }.value
        #expect(onNoLoop)
        try await group.shutdownGracefully()
    }
}
