/// A configuration problem, located in its file.
///
/// `description` is the line an operator sees:
/// `config/apps/payroll.yaml:4:3: timeouts.connect: must be a duration like "30s", "2m" or "500ms" (got "soon")`.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file's path as it was given to the loader.
    public var file: String
    /// 1-based line, when the problem has a place in the file.
    public var line: Int?
    /// 1-based column, when the problem has a place in the file.
    public var column: Int?
    /// Dotted key path, e.g. `timeouts.connect` or `public.certificates[0].key`.
    public var key: String?
    /// What is wrong and what is expected.
    public var message: String

    /// Creates an error; leave `line`, `column` and `key` out when they do not apply.
    public init(file: String, line: Int? = nil, column: Int? = nil, key: String? = nil, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.key = key
        self.message = message
    }

    /// `FILE:LINE:COLUMN: KEY: MESSAGE`, leaving out the parts that are nil.
    public var description: String {
        var text = file
        if let line {
            text += ":\(line)"
            if let column { text += ":\(column)" }
        }
        text += ": "
        if let key, !key.isEmpty { text += "\(key): " }
        return text + message
    }
}

extension ConfigError {
    /// Orders errors by file, then position, so a file's problems read top to bottom.
    static func inFileOrder(_ lhs: ConfigError, _ rhs: ConfigError) -> Bool {
        (lhs.file, lhs.line ?? 0, lhs.column ?? 0, lhs.key ?? "", lhs.message)
            < (rhs.file, rhs.line ?? 0, rhs.column ?? 0, rhs.key ?? "", rhs.message)
    }
}
