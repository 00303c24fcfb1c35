internal import Yams

/// One YAML value with its dotted key path: typed conversions that fail with a located `ConfigError`.
///
/// Errors point at the value's key (where an operator looks for `timeouts.connect`), or at the item for
/// list items and the top level.
struct ValueNode {
    let node: Node
    let keyPath: String
    let diagnostics: Diagnostics
    /// Where errors about this value point.
    let mark: Mark?

    init(node: Node, keyPath: String, diagnostics: Diagnostics, mark: Mark? = nil) {
        self.node = node
        self.keyPath = keyPath
        self.diagnostics = diagnostics
        self.mark = mark ?? node.mark
    }

    /// An error at this value naming its key path.
    func error(_ message: String) -> ConfigError {
        diagnostics.error(at: mark, key: keyPath, message)
    }

    private var tagName: String { node.tag.rawValue }
    var isNull: Bool { node.scalar != nil && tagName == Tag.Name.null.rawValue }

    /// Whether the value is a mapping.
    var isMapping: Bool { node.mapping != nil }

    /// The number of items when the value is a list.
    var listCount: Int? { node.sequence?.count }

    /// Text of a scalar that YAML reads as a string (plain or quoted), else nil.
    private var stringScalar: String? {
        guard let scalar = node.scalar, tagName == Tag.Name.str.rawValue else { return nil }
        return scalar.string
    }

    /// "a list", "the number 8080", …: what the value was, for "(got …)".
    static func describe(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let scalar):
            switch node.tag.rawValue {
            case Tag.Name.null.rawValue: return "no value"
            case Tag.Name.bool.rawValue: return "the boolean \(scalar.string)"
            case Tag.Name.int.rawValue, Tag.Name.float.rawValue: return "the number \(scalar.string)"
            case Tag.Name.str.rawValue: return quoted(scalar.string)
            default:
                let prefix = "tag:yaml.org,2002:"
                let tag = node.tag.rawValue
                let type = tag.hasPrefix(prefix) ? String(tag.dropFirst(prefix.count)) : tag
                return "\(quoted(scalar.string)), which YAML reads as a \(type)"
            }
        }
    }

    private var got: String { "got \(Self.describe(node))" }

    /// A string; numbers and booleans are refused with a hint to quote them.
    func string() throws(ConfigError) -> String {
        if let text = stringScalar { return text }
        if let scalar = node.scalar, !isNull {
            throw error("must be a string (\(got); put it in quotes if you mean the text \(quoted(scalar.string)))")
        }
        throw error("must be a string (\(got))")
    }

    /// A string that is not empty.
    func nonEmptyString() throws(ConfigError) -> String {
        let text = try string()
        guard !text.isEmpty else { throw error("must not be empty") }
        return text
    }

    func int(in range: ClosedRange<Int>) throws(ConfigError) -> Int {
        guard let scalar = node.scalar, tagName == Tag.Name.int.rawValue, let value = Int.construct(from: scalar) else {
            throw error("must be a whole number from \(range.lowerBound) to \(range.upperBound) (\(got))")
        }
        guard range.contains(value) else {
            throw error("must be from \(range.lowerBound) to \(range.upperBound) (got \(value))")
        }
        return value
    }

    func bool() throws(ConfigError) -> Bool {
        guard let scalar = node.scalar, tagName == Tag.Name.bool.rawValue, let value = Bool.construct(from: scalar) else {
            throw error("must be true or false (\(got))")
        }
        return value
    }

    /// A duration: "500ms", "30s", "2m", "1h", "30d" or a bare whole number of seconds (ConfigDuration).
    func duration(allowZero: Bool = false) throws(ConfigError) -> Duration {
        let expected = #"must be a duration like "30s", "2m" or "500ms""#
        let text: String
        if let scalar = node.scalar, tagName == Tag.Name.int.rawValue {
            text = scalar.string
        } else if let string = stringScalar {
            text = string
        } else {
            throw error("\(expected) (\(got))")
        }
        switch ConfigDuration.parse(text) {
        case .success(let duration):
            if !allowZero && duration == .zero {
                throw error("must be longer than zero (got \(quoted(text)))")
            }
            return duration
        case .failure(.malformed):
            throw error("\(expected) (got \(quoted(text)))")
        case .failure(.negative):
            throw error("must not be negative (got \(quoted(text)))")
        case .failure(.tooLarge):
            throw error("is too long (got \(quoted(text)))")
        }
    }

    /// This value read as a mapping; unknown keys are reported when the reader finishes.
    func mapping() throws(ConfigError) -> MappingReader {
        try MappingReader(self)
    }

    /// Each item of a list, converted by `each`; a failing item is reported and left out, the others are kept.
    func list<T>(_ each: (ValueNode) throws(ConfigError) -> T) throws(ConfigError) -> [T] {
        guard case .sequence(let sequence) = node else {
            throw error("must be a list (\(got))")
        }
        var items: [T] = []
        for (index, item) in sequence.enumerated() {
            do throws(ConfigError) {
                items.append(try each(ValueNode(node: item, keyPath: "\(keyPath)[\(index)]", diagnostics: diagnostics)))
            } catch {
                diagnostics.report(error)
            }
        }
        return items
    }

    /// The value as kept for handler settings, recording where each key and list item below it is (by key path).
    func configValue(positions: inout [String: ConnectorApp.Source.Position]) throws(ConfigError) -> ConfigValue {
        switch node {
        case .sequence(let sequence):
            var items: [ConfigValue] = []
            for (index, item) in sequence.enumerated() {
                let child = ValueNode(node: item, keyPath: "\(keyPath)[\(index)]", diagnostics: diagnostics)
                do throws(ConfigError) {
                    items.append(try child.configValue(positions: &positions))
                    if let mark = child.mark { positions[child.keyPath] = .init(line: mark.line, column: mark.column) }
                } catch {
                    diagnostics.report(error)
                }
            }
            return .list(items)
        case .mapping:
            var reader = try mapping()
            var map: [String: ConfigValue] = [:]
            for entry in reader.takeRemaining() {
                do throws(ConfigError) {
                    map[entry.key] = try entry.value.configValue(positions: &positions)
                    if let mark = entry.keyMark { positions[entry.value.keyPath] = .init(line: mark.line, column: mark.column) }
                } catch {
                    diagnostics.report(error)
                }
            }
            return .map(map)
        default:
            return try configValue()
        }
    }

    /// The value as kept for handler settings.
    func configValue() throws(ConfigError) -> ConfigValue {
        switch node {
        case .scalar(let scalar):
            switch tagName {
            case Tag.Name.null.rawValue: return .null
            case Tag.Name.bool.rawValue: return Bool.construct(from: scalar).map(ConfigValue.bool) ?? .string(scalar.string)
            case Tag.Name.int.rawValue: return Int.construct(from: scalar).map(ConfigValue.int) ?? .string(scalar.string)
            case Tag.Name.float.rawValue: return Double.construct(from: scalar).map(ConfigValue.double) ?? .string(scalar.string)
            default: return .string(scalar.string)
            }
        case .sequence:
            return .list(try list { item throws(ConfigError) in try item.configValue() })
        case .mapping:
            var reader = try mapping()
            var map: [String: ConfigValue] = [:]
            for entry in reader.takeRemaining() {
                do throws(ConfigError) {
                    map[entry.key] = try entry.value.configValue()
                } catch {
                    diagnostics.report(error)
                }
            }
            return .map(map)
        case .alias:
            throw error("YAML aliases are not supported here")
        }
    }
}

/// `"text"` with quotes and backslashes escaped, for messages.
func quoted(_ text: String) -> String {
    var escaped = ""
    for character in text {
        switch character {
        case "\"": escaped += "\\\""
        case "\\": escaped += "\\\\"
        case "\n": escaped += "\\n"
        case "\t": escaped += "\\t"
        default: escaped.append(character)
        }
    }
    return "\"\(escaped)\""
}
