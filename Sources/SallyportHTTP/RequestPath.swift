/// A request target's path made canonical before it is routed or forwarded: dot segments removed
/// (RFC 3986 §5.2.4) and runs of slashes merged, so that `/app/x/../secret`, `/app/./secret` and
/// `/app//secret` are the paths the backend will act on, and routing sees the same. The query is kept as sent.
///
/// Characters some backends read as separators or dots are not decoded here but reported in
/// ``Normalized/hasEscapes``: `%2F`, `%5C` and `%2E` in any case, a raw backslash, and segments like `..;x`
/// (servlet containers drop what follows `;`). The relay refuses such paths unless the app opts in (Envoy's
/// `normalize_path`, `merge_slashes` and `path_with_escaped_slashes_action: REJECT_REQUEST` are the model).
public enum RequestPath {
    public struct Normalized: Sendable, Equatable {
        /// The canonical path, starting with `/`.
        public var path: String
        /// What followed the first `?`, unchanged (nil when there was no `?`).
        public var query: Substring?
        /// The path holds an encoded slash, backslash or dot, a raw backslash, or a `..;`-style segment.
        public var hasEscapes: Bool

        /// Path and query as a request target.
        public var target: String { self.query.map { self.path + "?" + $0 } ?? self.path }
    }

    /// Normalises `target` (origin form: a path starting with `/`, optionally `?query`); nil when it is not one.
    public static func normalize(_ target: String) -> Normalized? {
        let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let raw = parts[0]
        guard raw.hasPrefix("/") else { return nil }
        var output: [Substring] = []
        var hasEscapes = raw.contains("\\") || Self.containsEscape(raw)
        let segments = raw.split(separator: "/", omittingEmptySubsequences: true)
        for segment in segments {
            if segment.hasPrefix(".;") || segment.hasPrefix("..;") { hasEscapes = true }
            switch segment {
            case ".": continue
            case "..": _ = output.popLast()
            default: output.append(segment)
            }
        }
        var path = "/" + output.joined(separator: "/")
        // A directory stays a directory: "/a/b/" and "/a/b/.." end with a slash (RFC 3986 §5.2.4).
        let last = segments.last
        if !output.isEmpty, raw.hasSuffix("/") || last == "." || last == ".." { path += "/" }
        return Normalized(path: path, query: parts.count > 1 ? parts[1] : nil, hasEscapes: hasEscapes)
    }

    /// Whether `path` holds `%2F`, `%5C` or `%2E` in any case.
    static func containsEscape(_ path: Substring) -> Bool {
        let bytes = Array(path.utf8)
        var index = 0
        while index + 2 < bytes.count {
            if bytes[index] == UInt8(ascii: "%") {
                let high = bytes[index + 1]
                let low = bytes[index + 2] | 0x20  // lowercase a letter
                if high == UInt8(ascii: "2"), low == UInt8(ascii: "f") || low == UInt8(ascii: "e") { return true }
                if high == UInt8(ascii: "5"), low == UInt8(ascii: "c") { return true }
            }
            index += 1
        }
        return false
    }
}
