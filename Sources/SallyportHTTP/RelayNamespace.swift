public import HTTPTypes

/// What belongs to the relay in its users' HTTP, on every published host: its own paths and its own cookies.
/// The edge, the forwarder and pre-authentication all consult it; here, below them all, none of them reaches
/// into another for it.
public enum RelayNamespace {
    /// Paths under this prefix belong to the relay; they never reach an app.
    public static let pathPrefix = "/.sallyport/"

    /// Answered `200 OK` by the relay itself, unauthenticated and unlogged, on every published host.
    public static let healthPath = "/.sallyport/health"

    /// Every cookie the relay sets (sessions, sign-in state) starts with this.
    public static let cookiePrefix = "__Host-sallyport-"

    /// Removes the relay's cookies from the `Cookie` fields of a request that goes on to a backend: they are
    /// credentials for the relay. Other cookies stay as they were.
    public static func removeCookies(fromRequest fields: inout HTTPFields) {
        let values = fields[values: .cookie]
        guard values.contains(where: { $0.contains(cookiePrefix) }) else { return }
        let kept = values.compactMap { value -> String? in
            let pairs = value.split(separator: ";").map { $0.drop { $0 == " " } }.filter { !$0.hasPrefix(cookiePrefix) }
            return pairs.isEmpty ? nil : pairs.joined(separator: "; ")
        }
        fields[values: .cookie] = kept
    }

    /// Removes every `Set-Cookie` of a backend's response that would plant or clear one of the relay's own
    /// cookies (any case of the prefix): only the relay sets those.
    public static func removeCookies(fromResponse fields: inout HTTPFields) {
        let values = fields[values: .setCookie]
        let prefix = cookiePrefix.lowercased()
        guard values.contains(where: { $0.lowercased().contains(prefix) }) else { return }
        fields[values: .setCookie] = values.filter { !$0.drop { $0 == " " }.lowercased().hasPrefix(prefix) }
    }
}
