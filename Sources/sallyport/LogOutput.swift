import ArgumentParser
import Foundation
import CoreFoundation
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
        switch self.format {
        case .text:
            // Built in one string: this runs for every request's access line.
            var line = self.journald ? "<\(Self.syslogPriority(event.level))>\(event.level) \(self.label):" : "\(Self.timestamp()) \(event.level) \(self.label):"
            for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
                line += " "
                line += key
                line += "="
                line += value.description
            }
            line += " ["
            line += event.source
            line += "] "
            line += event.message.description
            line += "\n"
            Self.emit(&line)
        case .json:
            var object: [String: String] = merged.mapValues { "\($0)" }
            object["ts"] = Self.timestamp()
            object["level"] = "\(event.level)"
            object["logger"] = self.label
            object["source"] = event.source
            object["msg"] = "\(event.message)"
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
            var line = String(decoding: data, as: UTF8.self) + "\n"
            Self.emit(&line)
        }
    }

    /// One write(2) per line, under a lock, so lines from several threads never interleave.
    private static let output = Mutex(())

    private static func emit(_ line: inout String) {
        line.withUTF8 { bytes in
            output.withLock { _ in
                var offset = 0
                while offset < bytes.count {
                    let written = write(2, bytes.baseAddress! + offset, bytes.count - offset)
                    if written < 0 {
                        return
                    }
                    offset += written
                }
            }
        }
    }

    /// The formatted second of the last timestamp: a second's lines share it, only their milliseconds differ.
    private static let lastSecond = Mutex<(second: Int, text: String)>((-1, ""))

    /// `2026-11-26T11:53:35.123Z`.
    static func timestamp() -> String {
        let now = Date.now.timeIntervalSince1970
        let second = Int(now)
        let prefix = Self.lastSecond.withLock { last -> String in
            if last.second == second { return last.text }
            // "2026-11-26T11:53:35Z" without its "Z".
            let text = String(Self.secondStyle.format(Date(timeIntervalSince1970: Double(second))).dropLast()) + "."
            last = (second, text)
            return text
        }
        let milliseconds = min(Int((now - Double(second)) * 1000), 999)
        return prefix + (milliseconds < 10 ? "00" : milliseconds < 100 ? "0" : "") + "\(milliseconds)Z"
    }

    private static let secondStyle = Date.ISO8601FormatStyle()

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
