/// A failure of the test harness itself: a tool missing, a process that never became ready, a timeout.
///
/// The message says what was expected and includes the relevant log tail, so a failing test explains itself.
public struct HarnessError: Error, Hashable, CustomStringConvertible {
    /// What went wrong, stable across releases; new codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String

        /// A process could not be started (missing executable, bad directory).
        public static let launchFailed = Code(name: "launchFailed")
        /// Something did not happen within its timeout.
        public static let timedOut = Code(name: "timedOut")
        /// A process exited while the harness was still waiting for it.
        public static let exitedEarly = Code(name: "exitedEarly")
        /// A file or directory operation failed.
        public static let fileSystem = Code(name: "fileSystem")
        /// A built product or system tool was not found.
        public static let notFound = Code(name: "notFound")
        /// A command the harness ran exited with an error.
        public static let commandFailed = Code(name: "commandFailed")

        public var description: String { name }
    }

    /// The kind of failure.
    public var code: Code
    /// What failed, with enough context (log tail, paths) to act on it.
    public var message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}

/// The last `lines` lines of `text`, for error messages; for a crash report (Swift's backtracer), its start
/// instead, with the lines logged before it: what crashed and where matters, not the registers and images at its
/// end.
func tail(_ text: String, lines: Int = 40) -> String {
    let all = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
    if let start = all.firstIndex(where: { $0.contains("Program crashed") || $0.contains("Fatal error") }), all.count - start > lines {
        let before = all[max(all.startIndex, start - 10)..<start]
        let report = all[start..<min(start + lines, all.endIndex)]
        return (before + report + ["…"] + all.suffix(4)).joined(separator: "\n")
    }
    return all.suffix(lines).joined(separator: "\n")
}

extension Duration {
    /// Seconds as a floating-point number, for messages and `TimeInterval` APIs.
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
