internal import Yams

/// Reads a YAML mapping strictly: each key is taken at most once by a typed conversion, and `finish()`
/// reports every key nobody took as unknown, at that key's own line.
///
/// Conversion failures are reported to the file's `Diagnostics` and the reader carries on, so one pass
/// finds every problem; a caller builds its value only when the diagnostics stayed empty.
struct MappingReader {
    struct Entry {
        let key: String
        let keyMark: Mark?
        let value: ValueNode
    }

    let keyPath: String
    let mark: Mark?
    let diagnostics: Diagnostics
    private let entries: [Entry]
    private var taken: Set<String> = []
    /// Every key this reader knows, in the order they were asked for: the candidates for "did you mean".
    private var knownKeys: [String] = []

    /// Reads `value` as a mapping with string keys.
    init(_ value: ValueNode) throws(ConfigError) {
        guard case .mapping(let mapping) = value.node else {
            throw value.error("must be a mapping of keys to values (got \(ValueNode.describe(value.node)))")
        }
        keyPath = value.keyPath
        mark = value.mark
        diagnostics = value.diagnostics
        var entries: [Entry] = []
        for (key, item) in mapping {
            guard case .scalar(let scalar) = key, !scalar.string.isEmpty else {
                throw diagnostics.error(at: key.mark, key: value.keyPath, "keys must be plain names (got \(ValueNode.describe(key)))")
            }
            let path = Self.join(value.keyPath, scalar.string)
            let entryValue = ValueNode(node: item, keyPath: path, diagnostics: diagnostics, mark: key.mark)
            entries.append(Entry(key: scalar.string, keyMark: key.mark, value: entryValue))
        }
        self.entries = entries
    }

    static func join(_ parent: String, _ key: String) -> String {
        parent.isEmpty ? key : "\(parent).\(key)"
    }

    func path(_ key: String) -> String { Self.join(keyPath, key) }

    func entry(_ key: String) -> Entry? { entries.first { $0.key == key } }

    /// The line of `key`'s name, if present.
    func keyMark(_ key: String) -> Mark? { entry(key)?.keyMark }

    /// Error pointing at the key's name (or, when absent, at the mapping).
    func errorAtKey(_ key: String, _ message: String) -> ConfigError {
        diagnostics.error(at: keyMark(key) ?? mark, key: path(key), message)
    }

    private mutating func take(_ key: String) -> Entry? {
        knownKeys.append(key)
        taken.insert(key)
        return entry(key)
    }

    /// A key that must be present. Returns nil (and reports) when it is missing or invalid.
    mutating func required<T>(_ key: String, _ convert: (ValueNode) throws(ConfigError) -> T) -> T? {
        guard let entry = take(key) else {
            diagnostics.report(diagnostics.error(at: mark, key: path(key), "required key is missing"))
            return nil
        }
        return run(convert, on: entry.value)
    }

    /// A key that may be absent. Returns nil when absent or invalid (the latter is reported).
    mutating func optional<T>(_ key: String, _ convert: (ValueNode) throws(ConfigError) -> T) -> T? {
        guard let entry = take(key) else { return nil }
        return run(convert, on: entry.value)
    }

    /// A key with a default. An invalid value is reported and the default returned, so the caller can go on
    /// checking; the file is rejected anyway.
    mutating func optional<T>(_ key: String, default defaultValue: T, _ convert: (ValueNode) throws(ConfigError) -> T) -> T {
        optional(key, convert) ?? defaultValue
    }

    /// Takes every key not taken yet (for free-form settings).
    mutating func takeRemaining() -> [Entry] {
        let rest = entries.filter { !taken.contains($0.key) }
        for entry in rest { taken.insert(entry.key) }
        return rest
    }

    /// Reports each key that no one took, with a suggestion when one of the known keys is close.
    func finish() {
        for entry in entries where !taken.contains(entry.key) {
            var message = "unknown key"
            if let suggestion = KeySuggestion.closest(to: entry.key, among: knownKeys) {
                message += " (did you mean \(quoted(suggestion))?)"
            } else if !knownKeys.isEmpty {
                message += "; allowed keys here: \(knownKeys.joined(separator: ", "))"
            }
            diagnostics.report(diagnostics.error(at: entry.keyMark, key: path(entry.key), message))
        }
    }

    private func run<T>(_ convert: (ValueNode) throws(ConfigError) -> T, on value: ValueNode) -> T? {
        if value.isNull {
            diagnostics.report(value.error("has no value; give one, or remove the key to use the default where there is one"))
            return nil
        }
        do throws(ConfigError) {
            return try convert(value)
        } catch {
            diagnostics.report(error)
            return nil
        }
    }
}

/// Picks the allowed key an unknown key was most likely meant to be.
enum KeySuggestion {
    static func closest(to key: String, among candidates: [String]) -> String? {
        let lowered = key.lowercased()
        var best: (key: String, distance: Int)?
        for candidate in candidates {
            let distance = editDistance(Array(lowered), Array(candidate.lowercased()))
            if distance < (best?.distance ?? .max) { best = (candidate, distance) }
        }
        guard let best else { return nil }
        let limit = min(key.count, best.key.count) <= 4 ? 1 : 2
        let isTruncation = lowered.count >= 4 && best.key.lowercased().hasPrefix(lowered)
        return best.distance <= limit || isTruncation ? best.key : nil
    }

    private static func editDistance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = Array(repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
