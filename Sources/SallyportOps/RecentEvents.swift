public import Foundation
public import Logging
import Synchronization

/// The last warnings and errors, for the status page: a log handler that keeps the newest `capacity` events
/// at `warning` or above. It sees exactly what the log shows, so it holds no more than the log may.
public final class RecentEvents: Sendable {
    /// One kept event.
    public struct Event: Sendable {
        public var time: Date
        public var level: Logger.Level
        public var label: String
        public var message: String
        /// `key=value` pairs, sorted by key.
        public var details: String
    }

    private let events = Mutex<[Event]>([])
    private let capacity: Int

    public init(capacity: Int = 50) {
        self.capacity = capacity
    }

    /// Newest first.
    public var newestFirst: [Event] { self.events.withLock { $0.reversed() } }

    func record(_ event: Event) {
        self.events.withLock { events in
            events.append(event)
            if events.count > self.capacity { events.removeFirst(events.count - self.capacity) }
        }
    }

    /// A log handler that feeds this buffer (combine it with the output's handler in a `MultiplexLogHandler`).
    public func handler(label: String) -> any LogHandler {
        Handler(label: label, events: self)
    }

    struct Handler: LogHandler {
        let label: String
        let events: RecentEvents
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .warning

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { self.metadata[key] }
            set { self.metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            guard event.level >= .warning else { return }
            let all = self.metadata.merging(event.metadata ?? [:]) { $1 }
            let details = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            self.events.record(Event(time: Date(), level: event.level, label: self.label, message: "\(event.message)", details: details))
        }
    }
}

extension StatusPage.Section {
    /// The "Recent warnings and errors" section: time, level, message and fields of each kept event, newest first.
    public static func recentEvents(_ events: RecentEvents, since: String) -> Self {
        let rows: [[StatusPage.Cell]] = events.newestFirst.map { event in
            [
                .init(event.time.formatted(.iso8601)), .init("\(event.level)", tone: event.level >= .error ? .bad : .warn), .init(event.message),
                .init(event.details),
            ]
        }
        return Self(title: "Recent warnings and errors", columns: ["time", "level", "message", "details"], rows: rows, empty: "None since \(since).")
    }
}
