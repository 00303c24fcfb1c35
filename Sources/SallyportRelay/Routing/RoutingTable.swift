public import SallyportConfig

/// Maps a request's host and path to a published app: longest path prefix wins.
///
/// A value type rebuilt on every configuration change; lookups need no lock beyond reading the snapshot.
public struct RoutingTable: Sendable {
    struct Entry: Sendable {
        var prefix: String
        var app: AppConfig
    }

    private var byHost: [String: [Entry]] = [:]

    /// Builds the table. Apps must already be conflict-free (``ConfigLoader/checkConflicts(_:)``).
    public init(apps: [AppConfig]) {
        for app in apps {
            self.byHost[app.externalURL.host, default: []].append(Entry(prefix: app.externalURL.pathPrefix, app: app))
        }
        for key in self.byHost.keys {
            self.byHost[key]!.sort { $0.prefix.utf8.count > $1.prefix.utf8.count }
        }
    }

    /// The app serving `authority` (a Host header value, port optional) and `path` (may include a query).
    public func route(authority: String, path: String) -> AppConfig? {
        guard let entries = self.byHost[Self.hostname(authority)] else { return nil }
        let pathOnly = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? path
        for entry in entries {
            if pathOnly.hasPrefix(entry.prefix) { return entry.app }
            // "/hr" reaches the app published at "/hr/".
            if entry.prefix.count > 1, pathOnly == entry.prefix.dropLast() { return entry.app }
        }
        return nil
    }

    /// The identity providers used by the apps on `authority`'s host; nil when no app is published there.
    public func providers(onHost authority: String) -> Set<String>? {
        guard let entries = self.byHost[Self.hostname(authority)] else { return nil }
        return Set(entries.compactMap { $0.app.preAuthentication.policy?.provider })
    }

    /// Lowercased host without port; handles `[v6]:port`.
    static func hostname(_ authority: String) -> String {
        var host = Substring(authority)
        if host.hasPrefix("[") {
            if let end = host.firstIndex(of: "]") { host = host[host.index(after: host.startIndex)..<end] }
        } else if let colon = host.lastIndex(of: ":") {
            host = host[..<colon]
        }
        if host.hasSuffix(".") { host = host.dropLast() }
        return host.lowercased()
    }
}
