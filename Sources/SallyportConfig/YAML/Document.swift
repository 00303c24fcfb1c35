internal import Foundation
internal import Yams

/// Collects every problem found while reading one file, so an operator sees them all at once.
final class Diagnostics {
    let file: String
    private(set) var errors: [ConfigError] = []

    init(file: String) {
        self.file = file
    }

    func report(_ error: ConfigError) {
        errors.append(error)
    }

    func error(at mark: Mark?, key: String?, _ message: String) -> ConfigError {
        ConfigError(file: file, line: mark?.line, column: mark?.column, key: key, message: message)
    }

    /// The problems in file order.
    var sortedErrors: [ConfigError] {
        errors.sorted(by: ConfigError.inFileOrder)
    }
}

/// Every problem found in one file, in file order.
struct FileProblems: Error {
    var errors: [ConfigError]
}

/// Turns YAML text into the root node of a config file, or a located error.
enum Document {
    /// Composes `yaml` and checks that its top level is a mapping; `expectedKeys` names them in the empty-file message.
    static func root(yaml: String, file: String, kind: String, expectedKeys: [String]) throws(ConfigError) -> Node {
        let composed: Node?
        do {
            composed = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw convert(error, yaml: yaml, file: file)
        } catch {
            throw ConfigError(file: file, message: "invalid YAML: \(error)")
        }
        guard let root = composed, !isNull(root) else {
            throw ConfigError(
                file: file,
                message: "the file is empty; \(kind) is a YAML mapping with the keys \(expectedKeys.joined(separator: ", "))"
            )
        }
        guard case .mapping = root else {
            throw ConfigError(
                file: file,
                line: root.mark?.line,
                column: root.mark?.column,
                message: "the top level must be a mapping of keys to values, like `key: value` lines (got \(ValueNode.describe(root)))"
            )
        }
        return root
    }

    private static func isNull(_ node: Node) -> Bool {
        guard case .scalar = node else { return false }
        return node.tag.rawValue == Tag.Name.null.rawValue
    }

    static func convert(_ error: YamlError, yaml: String, file: String) -> ConfigError {
        switch error {
        case .scanner(let context, let problem, let mark, _),
            .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            var message = "invalid YAML: \(problem)"
            if let context {
                message += " (\(context.text) at line \(context.mark.line), column \(context.mark.column))"
            }
            if character(at: mark, in: lines(of: yaml)) == "\t" {
                message += "; YAML does not allow tabs for indentation, use spaces"
            }
            return ConfigError(file: file, line: mark.line, column: mark.column, message: message)
        case .reader(let problem, let offset, _, _):
            let location = offset.map { position(ofUTF8Offset: $0, in: yaml) }
            return ConfigError(file: file, line: location?.line, column: location?.column, message: "invalid YAML: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            let key = duplicates.first ?? ""
            let first = context.mark
            let lines = lines(of: yaml)
            // Yams points at the first occurrence; the one to delete is the later one, so point there when we can find it.
            if let later = laterOccurrence(ofKey: key, after: first, in: lines) {
                return ConfigError(
                    file: file,
                    line: later.line,
                    column: later.column,
                    key: parentPath(ofLine: later.line, column: later.column, in: lines).map { "\($0).\(key)" } ?? key,
                    message: "duplicate key: it already appears at line \(first.line); each key may appear only once in a mapping"
                )
            }
            return ConfigError(
                file: file,
                line: first.line,
                column: first.column,
                key: key,
                message: "duplicate key: it appears more than once in this mapping; each key may appear only once"
            )
        case .no, .memory, .writer, .emitter, .representer, .dataCouldNotBeDecoded:
            return ConfigError(file: file, message: "invalid YAML: \(error)")
        }
    }

    private typealias Lines = [Substring.UnicodeScalarView]

    private static func lines(of yaml: String) -> Lines {
        yaml.split(separator: "\n", omittingEmptySubsequences: false).map(\.unicodeScalars)
    }

    /// Finds a later line that starts, at the same column, with `key:`: the duplicate in a block mapping.
    private static func laterOccurrence(ofKey key: String, after mark: Mark, in lines: Lines) -> (line: Int, column: Int)? {
        guard !key.isEmpty else { return nil }
        var index = mark.line  // the line after the first occurrence (lines are 0-based here, marks 1-based)
        while index < lines.count {
            let line = lines[index]
            let indent = line.prefix(while: { $0 == " " }).count
            if indent + 1 == mark.column {
                let rest = String(String.UnicodeScalarView(line.dropFirst(indent)))
                for candidate in [key, "\"\(key)\"", "'\(key)'"] where rest.hasPrefix(candidate) {
                    let after = rest.dropFirst(candidate.count).drop(while: { $0 == " " })
                    if after.hasPrefix(":") { return (index + 1, mark.column) }
                }
            } else if indent + 1 < mark.column, !line.allSatisfy({ $0 == " " || $0 == "\r" }),
                !line.dropFirst(indent).starts(with: "#".unicodeScalars)
            {
                return nil  // left the mapping
            }
            index += 1
        }
        return nil
    }

    /// The dotted path of the block mappings enclosing a key at `line`/`column` ("" at the top level), found
    /// by indentation; nil inside a list or a flow collection, where the path cannot be told from the text.
    private static func parentPath(ofLine line: Int, column: Int, in lines: Lines) -> String? {
        var parents: [String] = []
        var indent = column - 1
        var index = line - 2
        while indent > 0, index >= 0 {
            let text = lines[index]
            let lineIndent = text.prefix(while: { $0 == " " }).count
            let content = String(String.UnicodeScalarView(text.dropFirst(lineIndent)))
            index -= 1
            guard lineIndent < indent, !content.isEmpty, !content.hasPrefix("#"), content != "\r" else { continue }
            // A parent is a line `key:` with nothing after the colon but a comment.
            guard !content.hasPrefix("-"), let colon = content.firstIndex(of: ":") else { return nil }
            let rest = content[content.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            guard rest.isEmpty || rest.hasPrefix("#") else { return nil }
            parents.insert(String(content[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "\"' ")), at: 0)
            indent = lineIndent
        }
        return parents.isEmpty ? nil : parents.joined(separator: ".")
    }

    /// The character a parser mark points at, if any.
    private static func character(at mark: Mark, in lines: Lines) -> Character? {
        guard mark.line >= 1, mark.line <= lines.count else { return nil }
        let scalars = lines[mark.line - 1]
        guard mark.column >= 1, mark.column <= scalars.count else { return nil }
        return Character(scalars[scalars.index(scalars.startIndex, offsetBy: mark.column - 1)])
    }

    private static func position(ofUTF8Offset offset: Int, in yaml: String) -> (line: Int, column: Int) {
        var line = 1
        var column = 1
        for byte in yaml.utf8.prefix(offset) {
            if byte == UInt8(ascii: "\n") {
                line += 1
                column = 1
            } else if byte & 0xC0 != 0x80 {
                column += 1
            }
        }
        return (line, column)
    }
}
