import ArgumentParser
import Foundation
import Glibc
import Logging
import Synchronization

/// How `sallyport` writes its log to standard error: `text` (one line per event, millisecond UTC timestamps)
/// or `json` (one object per line, for log shippers). Under systemd (`JOURNAL_STREAM` set) text lines carry
/// the syslog priority prefix (`<3>`) and no timestamp: journald adds its own and keeps the priority.
enum LogFormat: String, CaseIterable, ExpressibleByArgument, Sendable {
    case text
    case json
}

struct SallyportLogHandler: LogHandler {
    let label: String
    let format: LogFormat
    let journald: Bool
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = self.metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let line: String
        switch self.format {
        case .text:
            let fields = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            let head = self.journald ? "<\(Self.syslogPriority(event.level))>\(event.level) \(self.label):" : "\(Self.timestamp()) \(event.level) \(self.label):"
            line = [head, fields, "[\(event.source)]", "\(event.message)"].filter { !$0.isEmpty }.joined(separator: " ")
        case .json:
            var object: [String: String] = merged.mapValues { "\($0)" }
            object["ts"] = Self.timestamp()
            object["level"] = "\(event.level)"
            object["logger"] = self.label
            object["source"] = event.source
            object["msg"] = "\(event.message)"
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
            line = String(decoding: data, as: UTF8.self)
        }
        Self.write(line + "\n")
    }

    /// One write per line, under a lock, so lines from several threads never interleave.
    private static let output = Mutex(())

    private static func write(_ line: String) {
        output.withLock { _ in FileHandle.standardError.write(Data(line.utf8)) }
    }

    private static let timestampStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    /// `2026-11-26T11:53:35.123Z`.
    static func timestamp() -> String {
        Self.timestampStyle.format(Date.now)
    }

    /// Whether standard error is journald's stream: systemd sets `JOURNAL_STREAM` to its device and inode, and
    /// a child whose stderr was redirected elsewhere inherits the variable but not the stream.
    static func standardErrorIsJournal() -> Bool {
        guard let stream = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] else { return false }
        var info = stat()
        guard fstat(2, &info) == 0 else { return false }
        return stream == "\(info.st_dev):\(info.st_ino)"
    }

    /// The syslog priority journald reads from a `<N>` prefix.
    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }
}
