#if canImport(Glibc)
import Glibc
#endif
import Foundation
public import Logging
public import NIOCore
import NIOExtras
public import NIOPosix
import SallyportPluginAPI
import Synchronization

/// One plugin library run in its own supervised process (``PluginHostProcess``).
///
/// The connector talks to the host over a socket (``HostProtocol``). When the host dies (a crash, an abort, a
/// kill) the calls it was answering end at once, so only the requests it was working on fail (with a clear
/// page); the log names the plugin and what the process printed about its end (Swift's `Fatal error: … at
/// file:line`, or the crash backtrace). The host is started again as soon as it reports a crash (its process
/// finishes its backtrace meanwhile, and is reaped apart), after a backoff when it keeps ending (0.5 s doubling
/// to 30 s; reset once a host lived 60 s), and every handler it held is made again; calls that arrive meanwhile
/// wait for it within their deadline. A host
/// that stops answering pings for 10 s (its threads all blocked) or leaves more than ``maximumPendingCalls``
/// calls unanswered is killed and started again.
public final class PluginHost: Sendable {
    /// The library file.
    public let library: String
    let executable: String
    let logger: Logger
    let group: any EventLoopGroup

    static let maximumPendingCalls = 1000
    static let pingInterval = Duration.seconds(5)
    static let pingTimeout = Duration.seconds(10)

    /// What the host said about itself when it started.
    public struct Hello: Sendable {
        public var plugin: String
        public var version: String
        public var handlers: [HostProtocol.HandlerInfo]
    }

    /// A handler the host holds, kept to make it again after a restart and to route its logs and metrics.
    struct Made: Sendable {
        var handler: String
        var app: String
        var settings: SettingsMap
        var logLevel: LogLevel
        var logger: PluginLogger
        var metrics: PluginMetrics
    }

    /// One running host process and its socket.
    final class Connection: Sendable {
        let send: AsyncStream<HostProtocol.ToHost>.Continuation
        let pid: pid_t
        init(send: AsyncStream<HostProtocol.ToHost>.Continuation, pid: pid_t) {
            self.send = send
            self.pid = pid
        }
    }

    private struct State {
        /// Which host serves, whether one is starting, and when a host that ended starts again.
        var life = PluginHostLife<Connection>()
        var waiting: [CheckedContinuation<Connection?, Never>] = []
        var pending: [UInt64: CheckedContinuation<HostProtocol.ToConnector?, Never>] = [:]
        var makes: [UInt64: CheckedContinuation<HostProtocol.ToConnector?, Never>] = [:]
        var pongs: [UInt64: CheckedContinuation<Bool, Never>] = [:]
        /// Handlers the host holds, made again after a restart.
        var made: [UInt64: Made] = [:]
        /// Handlers being made: their log lines are routed, but a restart does not make them again (the make
        /// fails, and the connector tries it again later).
        var making: [UInt64: Made] = [:]
        var next: UInt64 = 1
        /// Calls failed when the host reported its crash, before it exited (for the log line of its end).
        var failedEarly = 0
        /// Crashed hosts still writing their crash report: killed on ``stop()`` or after ``reportAllowance``.
        var lingering: Set<pid_t> = []
        var hello: Hello?

        /// The live host, if one serves.
        var connection: Connection? { self.life.connection }

        /// The handler a log line or metric from the host belongs to, made or being made.
        func handler(_ id: UInt64) -> Made? { self.made[id] ?? self.making[id] }

        /// Takes the calls and makes the ended host was answering, to end them unanswered (their requests get
        /// 502); new calls wait for the next host.
        mutating func takeUnanswered() -> [CheckedContinuation<HostProtocol.ToConnector?, Never>] {
            defer { (self.pending, self.makes) = ([:], [:]) }
            return Array(self.pending.values) + Array(self.makes.values)
        }
    }

    private let state = Mutex(State())

    public init(library: String, executable: String = PluginHost.currentExecutable, logger: Logger, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.library = library
        self.executable = executable
        self.logger = logger
        self.group = group
    }

    /// This process's own binary (`sallyport`), which runs the hosts: `/proc/self/exe` names the very file this
    /// process runs, even after a package upgrade replaced the one on disk, so host and connector always match.
    public static var currentExecutable: String {
        FileManager.default.fileExists(atPath: "/proc/self/exe") ? "/proc/self/exe" : CommandLine.arguments[0]
    }

    /// The plugin's name once its host said hello, else the library's file name.
    public var pluginName: String {
        self.state.withLock { $0.hello?.plugin } ?? URL(fileURLWithPath: self.library).lastPathComponent
    }

    // MARK: Calls

    private func nextID() -> UInt64 { self.state.withLock { state in defer { state.next += 1 }; return state.next } }

    /// The live connection, waiting while the host restarts; nil once stopped.
    private func connection() async -> Connection? {
        await withCheckedContinuation { continuation in
            let ready: Connection?? = self.state.withLock { state in
                if let connection = state.connection { return .some(connection) }
                if state.life.isStopped { return .some(nil) }
                state.waiting.append(continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    /// Sends a call and waits for its answer; nil when the host died before answering (or is stopped).
    func call(_ build: (UInt64) -> HostProtocol.ToHost) async -> HostProtocol.ToConnector? {
        guard let connection = await self.connection() else { return nil }
        let id = self.nextID()
        let message = build(id)
        var overloaded = false
        let answer: HostProtocol.ToConnector? = await withCheckedContinuation { continuation in
            let sent = self.state.withLock { state -> Bool in
                guard state.connection === connection else { return false }
                state.pending[id] = continuation
                overloaded = state.pending.count > Self.maximumPendingCalls
                return true
            }
            guard sent else { return continuation.resume(returning: nil) }
            connection.send.yield(message)
            if overloaded {
                self.logger.error("the plugin host leaves too many calls unanswered; restarting it", metadata: ["calls": "\(Self.maximumPendingCalls)"])
                kill(connection.pid, SIGKILL)
            }
        }
        return answer
    }

    /// Makes a handler in the host; remembered so that a restarted host makes it again.
    func make(_ made: Made) async -> (id: UInt64, answer: HostProtocol.ToConnector?) {
        let id = self.nextID()
        self.state.withLock { $0.making[id] = made }
        defer { self.state.withLock { _ = $0.making.removeValue(forKey: id) } }
        guard let connection = await self.connection() else { return (id, nil) }
        let answer: HostProtocol.ToConnector? = await withCheckedContinuation { continuation in
            let sent = self.state.withLock { state -> Bool in
                guard state.connection === connection else { return false }
                state.makes[id] = continuation
                return true
            }
            guard sent else { return continuation.resume(returning: nil) }
            connection.send.yield(.make(id: id, handler: made.handler, app: made.app, settings: made.settings, logLevel: made.logLevel))
        }
        if case .made = answer { self.state.withLock { $0.made[id] = made } }
        return (id, answer)
    }

    /// The handler is no longer used: the host shuts it down and forgets it.
    func release(_ id: UInt64) {
        let connection = self.state.withLock { state in
            state.made.removeValue(forKey: id)
            return state.connection
        }
        connection?.send.yield(.release(id: id))
    }

    // MARK: Process

    /// Starts the host and waits for its hello (or its refusal, as a failure to report).
    public func start() async -> Result<Hello, PluginLoader.Failure> {
        switch await self.launch() {
        case .failure(let failure):
            return .failure(failure)
        case .success(let (hello, exited, connection)):
            self.state.withLock { $0.hello = hello }
            Task { await self.supervise(connection, exited: exited) }
            return .success(hello)
        }
    }

    /// Stops the host: it sees its socket close and exits; one that does not is killed.
    public func stop() {
        let (connection, waiting, lingering) = self.state.withLock { state in
            defer { state.waiting = [] }
            return (state.life.stop(), state.waiting, state.lingering)
        }
        for waiter in waiting { waiter.resume(returning: nil) }
        for pid in lingering { kill(pid, SIGKILL) }
        guard let connection else { return }
        connection.send.finish()
        let pid = connection.pid
        Task {
            try? await Task.sleep(for: .seconds(3))
            kill(pid, SIGKILL)
        }
    }

    /// How a host process ended.
    struct Exit: Sendable {
        var description: String
        var output: [String]
    }

    /// What the supervisor hears of a host process: a crash reported on its output (it answers nothing more,
    /// though its backtracer may take seconds before it exits), then its exit.
    enum HostEvent: Sendable {
        case crashReported(pid: pid_t, output: [String])
        case exited(Exit)
    }

    /// How long a crashed host may take to finish its report before it is killed.
    static let reportAllowance = Duration.seconds(30)

    /// Starts a host process and waits for its first message.
    private func launch() async -> Result<(Hello, AsyncStream<HostEvent>, Connection), PluginLoader.Failure> {
        var sockets: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &sockets) == 0 else {
            return .failure(.init(path: self.library, reason: "cannot make a socket for its plugin host: \(String(cString: strerror(errno)))"))
        }
        let output = Pipe()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: self.executable)
        process.arguments = ["plugin-host", "--library", self.library]
        var environment = ProcessInfo.processInfo.environment
        // A crash prints where it happened (Swift's backtracer, when the toolchain provides it), briefly.
        environment["SWIFT_BACKTRACE"] = "enable=yes,interactive=no,color=no,threads=crashed,registers=none,images=none,limit=12,top=3"
        process.environment = environment
        process.standardInput = FileHandle(fileDescriptor: sockets[1], closeOnDealloc: false)
        process.standardOutput = output
        process.standardError = output
        let tail = OutputTail()
        let (exits, exited) = AsyncStream<HostEvent>.makeStream()
        process.terminationHandler = { process in
            let how = process.terminationReason == .uncaughtSignal ? "signal \(process.terminationStatus) (\(Self.signalName(process.terminationStatus)))" : "exit status \(process.terminationStatus)"
            // The output reader gets the last lines a moment to arrive.
            Task {
                await tail.closed()
                exited.yield(.exited(Exit(description: how, output: tail.lines)))
                exited.finish()
            }
        }
        do {
            try process.run()
        } catch {
            close(sockets[0])
            close(sockets[1])
            return .failure(.init(path: self.library, reason: "cannot start its plugin host \(self.executable): \(error)"))
        }
        close(sockets[1])
        let readEnd = dup(output.fileHandleForReading.fileDescriptor)
        try? output.fileHandleForWriting.close()
        try? output.fileHandleForReading.close()
        self.readOutput(readEnd, into: tail, pid: process.processIdentifier, events: exited)

        let channel: HostChannel
        do {
            channel = try await HostChannel.open(socket: sockets[0], group: self.group)
        } catch {
            kill(process.processIdentifier, SIGKILL)
            return .failure(.init(path: self.library, reason: "cannot talk to its plugin host: \(error)"))
        }
        let (outbox, send) = AsyncStream<HostProtocol.ToHost>.makeStream()
        let connection = Connection(send: send, pid: process.processIdentifier)
        let (firsts, first) = AsyncStream<HostProtocol.ToConnector?>.makeStream()
        Task {
            try? await channel.executeThenClose { inbound, outbound in
                await withTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for await message in outbox {
                            guard let frame = try? HostProtocol.encode(message, allocator: channel.channel.allocator) else { continue }
                            try? await outbound.write(frame)
                        }
                        outbound.finish()
                    }
                    group.addTask {
                        var greeted = false
                        do {
                            for try await frame in inbound {
                                guard let message = try? HostProtocol.decode(HostProtocol.ToConnector.self, from: frame) else {
                                    self.logger.error("the plugin host sent a message that cannot be read; restarting it", metadata: ["library": "\(self.library)"])
                                    break
                                }
                                if !greeted {
                                    greeted = true
                                    first.yield(message)
                                    first.finish()
                                    continue
                                }
                                self.receive(message)
                            }
                        } catch {}
                        if !greeted { first.yield(nil); first.finish() }
                        // The socket is gone: the process is ending (or must).
                        kill(connection.pid, SIGKILL)
                        send.finish()
                    }
                }
            }
        }
        var firstMessage: HostProtocol.ToConnector?
        for await message in firsts { firstMessage = message }
        switch firstMessage {
        case .hello(let plugin, let version, let handlers)?:
            guard self.goLive(connection) else {
                // Stopped while it started.
                connection.send.finish()
                kill(connection.pid, SIGKILL)
                return .failure(.init(path: self.library, reason: "the plugin was stopped while its host started"))
            }
            return .success((Hello(plugin: plugin, version: version, handlers: handlers), exits, connection))
        case .refused(let reason)?:
            return .failure(.init(path: self.library, reason: reason))
        default:
            var ended = "its plugin host ended before saying which plugin it runs"
            for await event in exits {
                if case .exited(let exit) = event { ended += " (\(exit.description)): \(exit.output.suffix(8).joined(separator: " | "))" }
            }
            return .failure(.init(path: self.library, reason: ended))
        }
    }

    /// Makes a started host the live one: handlers it must hold are made again first, then waiting calls go.
    /// False when the plugin was stopped meanwhile.
    private func goLive(_ connection: Connection) -> Bool {
        let live: (remake: [(key: UInt64, value: Made)], waiting: [CheckedContinuation<Connection?, Never>])? = self.state.withLock { state in
            guard state.life.started(connection, at: .now) else { return nil }
            defer { state.waiting = [] }
            return (state.made.sorted { $0.key < $1.key }, state.waiting)
        }
        guard let (remake, waiting) = live else { return false }
        for (id, made) in remake {
            connection.send.yield(.make(id: id, handler: made.handler, app: made.app, settings: made.settings, logLevel: made.logLevel))
        }
        for waiter in waiting { waiter.resume(returning: connection) }
        Task { await self.watch(connection) }
        return true
    }

    /// Routes one message from the host.
    private func receive(_ message: HostProtocol.ToConnector) {
        switch message {
        case .prepared(let call, _, _), .inspected(let call, _, _), .unknownHandler(let call):
            let waiter = self.state.withLock { $0.pending.removeValue(forKey: call) }
            waiter?.resume(returning: message)
        case .made(let id), .makeFailed(let id, _, _):
            let waiter = self.state.withLock { $0.makes.removeValue(forKey: id) }
            if let waiter { return waiter.resume(returning: message) }
            // A handler made again after a restart.
            if case .makeFailed(_, let errors, let text) = message {
                let made = self.state.withLock { $0.made.removeValue(forKey: id) }
                self.logger.error(
                    "a restarted plugin host could not make a handler again; its app answers 502",
                    metadata: ["app": "\(made?.app ?? "?")", "error": "\(text ?? errors.map { "\($0.key): \($0.message)" }.joined(separator: "; "))"]
                )
            }
        case .log(let id, let level, let text, let metadata):
            guard let id, let made = self.state.withLock({ $0.handler(id) }) else {
                return self.logger.log(level: Self.level(level), "\(text)", metadata: metadata.mapValues { .string($0) })
            }
            made.logger.log(level, text, metadata)
        case .counter(let id, let name, let dimensions, let amount):
            self.state.withLock { $0.handler(id) }?.metrics.increment(name, dimensions: dimensions, by: amount)
        case .duration(let id, let name, let dimensions, let seconds):
            self.state.withLock { $0.handler(id) }?.metrics.record(name, seconds: seconds, dimensions: dimensions)
        case .pong(let nonce):
            let waiter = self.state.withLock { $0.pongs.removeValue(forKey: nonce) }
            waiter?.resume(returning: true)
        case .hello, .refused:
            break
        }
    }

    /// Pings the live host; one that does not answer in time is killed (the supervisor starts it again).
    private func watch(_ connection: Connection) async {
        while true {
            try? await Task.sleep(for: Self.pingInterval)
            guard self.state.withLock({ $0.connection === connection }) else { return }
            let nonce = self.nextID()
            let answered = await Deadline.run(Self.pingTimeout) {
                await withCheckedContinuation { continuation in
                    self.state.withLock { $0.pongs[nonce] = continuation }
                    connection.send.yield(.ping(nonce))
                }
            }
            guard self.state.withLock({ $0.connection === connection }) else { return }
            if answered == nil {
                self.state.withLock { $0.pongs.removeValue(forKey: nonce) }?.resume(returning: false)
                self.logger.error("the plugin host stopped answering (its threads are blocked?); restarting it", metadata: ["plugin": "\(self.pluginName)"])
                kill(connection.pid, SIGKILL)
                return
            }
        }
    }

    /// Waits for the live host to crash or end, reports it, fails its unanswered calls, and starts another when
    /// ``PluginHostLife`` says (at once after a host that served, later when hosts keep ending).
    private func supervise(_ first: Connection, exited: AsyncStream<HostEvent>) async {
        var (live, events) = (first, exited)
        while true {
            var end: HostEvent?
            var iterator = events.makeAsyncIterator()
            while let event = await iterator.next() {
                end = event
                if case .crashReported = event { break }
            }
            let (unanswered, requests, pongs, action) = self.state.withLock { state in
                _ = state.life.hostEnded(live, at: .now)
                let requests = state.pending.count + state.failedEarly
                defer { (state.pongs, state.failedEarly) = ([:], 0) }
                return (state.takeUnanswered(), requests, state.pongs, state.life.restart())
            }
            for waiter in unanswered { waiter.resume(returning: nil) }
            for waiter in pongs.values { waiter.resume(returning: false) }
            let how: String
            let output: [String]
            switch end {
            case .crashReported(let pid, let lines)?:
                // Its backtracer finishes apart; the plugin's apps need not wait for it.
                how = "crashed (pid \(pid) still writing its report)"
                output = lines
                self.reap(pid: pid, rest: iterator)
            case .exited(let exit)?:
                (how, output) = (exit.description, exit.output)
            case nil:
                (how, output) = ("unknown", [])
            }
            guard case .start(var delay) = action else { return }
            self.logger.error(
                "plugin host ended; the requests it was answering got 502, and it starts again",
                metadata: [
                    "plugin": "\(self.pluginName)", "library": "\(self.library)", "exit": "\(how)",
                    "requests": "\(requests)", "restartIn": "\(delay)", "output": "\(Self.crashSite(output))",
                ]
            )
            while true {
                if delay > .zero { try? await Task.sleep(for: delay) }
                if self.state.withLock({ $0.life.isStopped }) { return }
                switch await self.launch() {
                case .success(let (_, next, connection)):
                    self.logger.notice("plugin host started again", metadata: ["plugin": "\(self.pluginName)"])
                    (live, events) = (connection, next)
                case .failure(let failure):
                    guard case .start(let next) = self.state.withLock({ $0.life.startFailed() }) else { return }
                    self.logger.error(
                        "plugin host did not start again; trying later",
                        metadata: ["plugin": "\(self.pluginName)", "reason": "\(failure.reason)", "restartIn": "\(next)"]
                    )
                    delay = next
                    continue
                }
                break
            }
        }
    }

    /// A crashed host finishing its report: its exit and the report's first frames are logged when it ends;
    /// it is killed if it takes longer than ``reportAllowance``, or when the plugin stops.
    private func reap(pid: pid_t, rest: sending AsyncStream<HostEvent>.AsyncIterator) {
        self.state.withLock { _ = $0.lingering.insert(pid) }
        let logger = self.logger
        let plugin = self.pluginName
        Task {
            var rest = rest
            let killer = Task {
                guard (try? await Task.sleep(for: Self.reportAllowance)) != nil else { return }
                kill(pid, SIGKILL)
            }
            var exit: Exit?
            while let event = await rest.next() { if case .exited(let ended) = event { exit = ended } }
            killer.cancel()
            self.state.withLock { _ = $0.lingering.remove(pid) }
            logger.notice(
                "crashed plugin host exited",
                metadata: [
                    "plugin": "\(plugin)", "pid": "\(pid)", "exit": "\(exit?.description ?? "unknown")",
                    "output": "\(Self.crashSite(exit?.output ?? []))",
                ]
            )
        }
    }

    /// The lines that say where a host crashed, on one line.
    static func crashSite(_ lines: [String]) -> String {
        lines.map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " | ")
    }

    static func signalName(_ signal: Int32) -> String {
        switch signal {
        case SIGILL: "SIGILL, a Swift runtime trap such as fatalError"
        case SIGTRAP: "SIGTRAP, a Swift runtime trap such as fatalError"
        case SIGABRT: "SIGABRT, abort"
        case SIGSEGV: "SIGSEGV, invalid memory access"
        case SIGBUS: "SIGBUS"
        case SIGKILL: "SIGKILL"
        case SIGTERM: "SIGTERM"
        default: "signal \(signal)"
        }
    }

    static func level(_ level: LogLevel) -> Logger.Level {
        switch level {
        case .debug: .debug
        case .info: .info
        case .notice: .notice
        case .warning: .warning
        case .error: .error
        }
    }

    /// Reads what the host prints, line by line: logged at debug, the last lines kept for a crash report.
    private func readOutput(_ descriptor: CInt, into tail: OutputTail, pid: pid_t, events: AsyncStream<HostEvent>.Continuation) {
        let logger = self.logger
        let library = self.library
        Task {
            do {
                let channel = try await NIOPipeBootstrap(group: self.group).takingOwnershipOfDescriptor(input: descriptor) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineBasedFrameDecoder(), maximumBufferSize: 64 * 1024))
                        return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
                try await channel.executeThenClose { inbound, _ in
                    for try await line in inbound {
                        let text = String(buffer: line)
                        if tail.add(text) {
                            self.crashing(pid: pid)
                            events.yield(.crashReported(pid: pid, output: tail.lines))
                        }
                        logger.debug("plugin host output", metadata: ["library": "\(library)", "pid": "\(pid)", "line": "\(text)"])
                    }
                }
            } catch {}
            tail.finish()
        }
    }

    /// The host reported a crash: it will answer nothing more, however long its backtrace takes before it exits
    /// (seconds on a busy machine). Its calls get their 502 now rather than at their deadline, and new calls wait
    /// for the restart.
    private func crashing(pid: pid_t) {
        let unanswered = self.state.withLock { state -> [CheckedContinuation<HostProtocol.ToConnector?, Never>] in
            guard let live = state.connection, live.pid == pid, state.life.hostEnded(live, at: .now) else { return [] }
            state.failedEarly += state.pending.count
            return state.takeUnanswered()
        }
        for waiter in unanswered { waiter.resume(returning: nil) }
    }

    /// The last lines a host printed, and whether its output has ended.
    final class OutputTail: Sendable {
        private struct State {
            var lines: [String] = []
            /// From the first line that reports a crash (Swift's `Fatal error`, the backtracer's report) on.
            var crash: [String] = []
            var ended = false
            var waiters: [CheckedContinuation<Void, Never>] = []
        }
        private let state = Mutex(State())

        /// Keeps a line; returns whether it is the first line of a crash (`Fatal error`, the backtracer's report).
        @discardableResult
        func add(_ line: String) -> Bool {
            self.state.withLock { state in
                state.lines.append(line)
                if state.lines.count > 64 { state.lines.removeFirst(state.lines.count - 64) }
                let ends = line.contains("Fatal error") || line.contains("Program crashed")
                // A leaked continuation is reported too, but the host lives on: only a crash ends it.
                let reports = ends || line.contains("SWIFT TASK CONTINUATION MISUSE")
                let first = state.crash.isEmpty && ends
                if state.crash.isEmpty ? reports : state.crash.count < 16, !line.trimmingCharacters(in: .whitespaces).isEmpty {
                    state.crash.append(line)
                }
                return first
            }
        }

        /// The crash report's first lines when there is one, else the last lines printed.
        var lines: [String] {
            self.state.withLock { $0.crash.isEmpty ? Array($0.lines.suffix(6)) : $0.crash }
        }

        func finish() {
            let waiters = self.state.withLock { state in
                state.ended = true
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.resume() }
        }

        /// Waits (up to a second) for the output to end.
        func closed() async {
            _ = await Deadline.run(.seconds(1)) {
                await withCheckedContinuation { continuation in
                    let ended = self.state.withLock { state in
                        if !state.ended { state.waiters.append(continuation) }
                        return state.ended
                    }
                    if ended { continuation.resume() }
                }
            }
        }
    }
}
