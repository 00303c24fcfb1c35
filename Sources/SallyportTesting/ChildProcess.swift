import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A child process with its standard output and error captured to a log file.
///
/// Standard input is `/dev/null`. The child starts with every signal at its default disposition and none
/// blocked, whatever the test process set (SwiftNIO ignores SIGPIPE, for one). A process still running when
/// this object is released is killed with SIGKILL, so a failing test does not leak servers.
public final class ChildProcess: @unchecked Sendable {
    /// The child's process id.
    public let pid: Int32
    /// The file that receives the child's output.
    public let logFile: String

    private let lock = NSLock()
    private var exitStatus: Int32?

    private init(pid: Int32, logFile: String) {
        self.pid = pid
        self.logFile = logFile
    }

    deinit {
        if isRunning {
            kill(pid, SIGKILL)
            _ = reap(blocking: true)
        }
    }

    /// Starts `executable` with `arguments`, appending its stdout and stderr to `logFile`.
    ///
    /// - Parameters:
    ///   - executable: an absolute path, or a bare name looked up in `PATH`.
    ///   - environment: variables added to (or replacing) the test process's environment; `nil` inherits it unchanged.
    ///   - currentDirectory: the child's working directory; `nil` keeps the test process's.
    public static func launch(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        logFile: String,
        currentDirectory: String? = nil
    ) throws -> ChildProcess {
        try launch(
            executable,
            arguments,
            environment: environment,
            stdout: logFile,
            stderr: logFile,
            currentDirectory: currentDirectory
        )
    }

    /// Like the public `launch`, with separate stdout and stderr files.
    static func launch(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]?,
        stdout: String,
        stderr: String,
        currentDirectory: String?
    ) throws -> ChildProcess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        if stderr == stdout {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        } else {
            posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        }
        if let currentDirectory {
            guard FileManager.default.fileExists(atPath: currentDirectory) else {
                throw HarnessError(.launchFailed, "working directory \(currentDirectory) for \(executable) does not exist")
            }
            let changed = addChangeDirectory(&actions, currentDirectory)
            guard changed == 0 else {
                throw HarnessError(.launchFailed, "cannot set working directory \(currentDirectory): \(String(cString: strerror(changed)))")
            }
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        // Same process group as the test runner, so Ctrl-C on `swift test` reaches the children too.
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var variables = ProcessInfo.processInfo.environment
        for (name, value) in environment ?? [:] {
            variables[name] = value
        }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }

        // Make sure the log exists even if the child never writes, so `log()` reads "" rather than failing.
        if !FileManager.default.fileExists(atPath: stdout) {
            _ = FileManager.default.createFile(atPath: stdout, contents: nil)
        }

        var pid: pid_t = 0
        let result: Int32
        if executable.contains("/") {
            result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        } else {
            result = posix_spawnp(&pid, executable, &actions, &attributes, argv, envp)
        }
        guard result == 0 else {
            throw HarnessError(.launchFailed, "cannot start \(executable): \(String(cString: strerror(result)))")
        }
        return ChildProcess(pid: pid, logFile: stdout)
    }

    /// `posix_spawn_file_actions_addchdir_np`, which glibc (2.29+) has but Swift's Glibc module does not import.
    private static func addChangeDirectory(_ actions: inout posix_spawn_file_actions_t, _ directory: String) -> Int32 {
        #if canImport(Darwin)
            return posix_spawn_file_actions_addchdir_np(&actions, directory)
        #else
            typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32
            guard let symbol = dlsym(nil, "posix_spawn_file_actions_addchdir_np") else { return ENOSYS }
            let function = unsafeBitCast(symbol, to: AddChdir.self)
            return withUnsafeMutablePointer(to: &actions) { function($0, directory) }
        #endif
    }

    /// Whether the child has not exited yet.
    public var isRunning: Bool {
        reap(blocking: false) == nil
    }

    /// Sends `signal` (for example SIGTERM, SIGKILL, SIGHUP) to the child; does nothing once it has exited.
    public func signal(_ signal: Int32) {
        guard isRunning else { return }
        kill(pid, signal)
    }

    /// The ids of the child's own children, from `/proc` (Linux only; empty elsewhere).
    public func childPIDs() -> [Int32] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { entry in
            guard let candidate = Int32(entry),
                let data = FileManager.default.contents(atPath: "/proc/\(entry)/stat")
            else { return nil }
            // Fields after the parenthesised command name: state, ppid, ...
            let stat = String(decoding: data, as: UTF8.self)
            guard let close = stat.lastIndex(of: ")") else { return nil }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && Int32(fields[1]) == pid ? candidate : nil
        }
    }

    /// Waits for the child to exit and returns its exit status, or `nil` if it is still running after `timeout`.
    ///
    /// A child killed by a signal reports 128 + the signal number, as a shell does.
    public func waitForExit(timeout: Duration) async -> Int32? {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var pause = Duration.milliseconds(5)
        while true {
            if let status = reap(blocking: false) {
                return status
            }
            if clock.now >= deadline {
                return nil
            }
            try? await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(50))
        }
    }

    /// Sends SIGTERM and, if the child is still running after `timeout`, SIGKILL; returns once it has exited.
    public func terminate(timeout: Duration = .seconds(5)) async {
        guard isRunning else { return }
        signal(SIGTERM)
        if await waitForExit(timeout: timeout) == nil {
            signal(SIGKILL)
            _ = await waitForExit(timeout: .seconds(30))
        }
    }

    /// The log file's contents so far (invalid UTF-8 replaced).
    public func log() -> String {
        guard let data = FileManager.default.contents(atPath: logFile) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    /// Polls the log until it contains `text`.
    ///
    /// Throws ``HarnessError`` with the log's tail if `timeout` passes first, or at once if the child exits
    /// without having logged `text`.
    public func waitForLog(containing text: String, timeout: Duration) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            if log().contains(text) { return }
            if let status = reap(blocking: false) {
                let output = log()
                if output.contains(text) { return }
                throw HarnessError(
                    .exitedEarly,
                    "process \(pid) exited with status \(status) before logging \"\(text)\"; log \(logFile) ends with:\n\(tail(output))"
                )
            }
            if clock.now >= deadline {
                throw HarnessError(
                    .timedOut,
                    "process \(pid) did not log \"\(text)\" within \(timeout.seconds)s; log \(logFile) ends with:\n\(tail(log()))"
                )
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Resident set size in bytes, from `/proc/PID/status` (`VmRSS`).
    public func residentMemory() throws -> Int {
        let statusFile = "/proc/\(pid)/status"
        guard let data = FileManager.default.contents(atPath: statusFile) else {
            throw HarnessError(.fileSystem, "cannot read \(statusFile): is process \(pid) still running?")
        }
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.count >= 2, let kilobytes = Int(fields[1]) {
                let unit = fields.count >= 3 ? fields[2].lowercased() : "kb"
                return unit == "kb" ? kilobytes * 1024 : kilobytes
            }
        }
        throw HarnessError(.fileSystem, "no VmRSS line in \(statusFile) (a zombie process has none)")
    }

    /// The exit status if the child has exited, reaping it once; `nil` while it runs.
    private func reap(blocking: Bool) -> Int32? {
        lock.withLock {
            if let exitStatus { return exitStatus }
            var status: Int32 = 0
            var result: pid_t
            repeat {
                result = waitpid(pid, &status, blocking ? 0 : WNOHANG)
            } while result == -1 && errno == EINTR
            guard result == pid else {
                if result == -1 && errno == ECHILD {
                    // Someone else reaped it; the status is lost.
                    exitStatus = -1
                }
                return exitStatus
            }
            let signal = status & 0x7f
            exitStatus = signal == 0 ? (status >> 8) & 0xff : 128 + signal
            return exitStatus
        }
    }
}
