public import Logging

/// One request as the access log shows it: one line per request on the relay and on the connector, at
/// `info` under the `sallyport.access` logger, switchable per app (`accessLog: false`).
///
/// Only what an operator needs to follow a request: never a query string (by default), a header value, a
/// cookie, a token or a ticket.
public struct AccessRecord: Sendable {
    /// The id the relay gave the request; the connector logs the same id.
    public var requestID: String
    public var method: String
    /// The request target as received (path and query).
    public var target: String
    /// Log the query too (`accessLog: withQuery`); by default only the path is logged.
    public var keepQuery = false
    /// What the line shows: the path, and the query with ``keepQuery``.
    public var path: String { self.keepQuery ? self.target : Self.pathOnly(self.target) }
    /// The final status (0: the client went away before an answer).
    public var status: Int = 0
    /// Request and response body bytes.
    public var bytesIn = 0
    public var bytesOut = 0
    public var started: ContinuousClock.Instant
    /// Extra fields: `app`, `user`, `client`, `connector`, `sso`, `outcome`, `attempts`…, in the order set.
    public var fields: [(String, String)] = []

    /// Starts a record; `target` is the request's path and query.
    public init(requestID: String, method: String, target: String, started: ContinuousClock.Instant = .now) {
        self.requestID = requestID
        self.method = method
        self.target = target
        self.started = started
    }

    /// `target` without its query: `/reports?id=7` → `/reports`.
    public static func pathOnly(_ target: String) -> String {
        guard let query = target.firstIndex(of: "?") else { return target }
        return String(target[..<query])
    }

    /// Sets a field (replacing an earlier value of the same name).
    public mutating func set(_ name: String, _ value: String) {
        if let index = self.fields.firstIndex(where: { $0.0 == name }) { self.fields[index].1 = value } else { self.fields.append((name, value)) }
    }

    /// Writes the record's line: `GET /reports 200` with the fields as metadata.
    public func log(to logger: Logger, now: ContinuousClock.Instant = .now) {
        let elapsed = now - self.started
        let milliseconds = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        var metadata: Logger.Metadata = [
            "request.id": "\(self.requestID)",
            "method": "\(self.method)",
            "path": "\(self.path)",
            "status": "\(self.status)",
            "bytes_in": "\(self.bytesIn)",
            "bytes_out": "\(self.bytesOut)",
            "duration_ms": "\((milliseconds * 10).rounded() / 10)",
        ]
        for (name, value) in self.fields { metadata[name] = "\(value)" }
        logger.info("\(self.method) \(self.path) \(self.status)", metadata: metadata)
    }
}
