/// Request or response header fields in order, with lookups that ignore case.
///
/// ``set(_:_:)`` and ``remove(_:)`` also treat `_` as `-`, because many servers and frameworks read
/// `X_Remote_User` as `X-Remote-User`: an identity header is only safe when every spelling is gone.
public struct HeaderFields: Sendable, Hashable, Codable, Sequence {
    /// One field.
    public struct Field: Sendable, Hashable, Codable {
        /// The name as sent.
        public var name: String
        /// The value.
        public var value: String

        /// Creates a field.
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    private var fields: [Field]

    /// Creates header fields from name/value pairs, in order.
    public init(_ fields: [Field] = []) { self.fields = fields }

    /// The fields in order.
    public func makeIterator() -> IndexingIterator<[Field]> { fields.makeIterator() }

    /// The number of fields.
    public var count: Int { fields.count }

    /// The first value of `name` (case ignored), if any.
    public subscript(name: String) -> String? {
        let wanted = name.lowercased()
        return fields.first { $0.name.lowercased() == wanted }?.value
    }

    /// Every value of `name` (case ignored), in order.
    public func values(named name: String) -> [String] {
        let wanted = name.lowercased()
        return fields.filter { $0.name.lowercased() == wanted }.map(\.value)
    }

    /// Adds a field after the others, keeping any of the same name.
    public mutating func append(_ name: String, _ value: String) {
        fields.append(Field(name: name, value: value))
    }

    /// Removes every field of this name in any spelling (case ignored, `_` equal to `-`), then adds one.
    public mutating func set(_ name: String, _ value: String) {
        remove(name)
        append(name, value)
    }

    /// Removes every field of this name in any spelling (case ignored, `_` equal to `-`).
    public mutating func remove(_ name: String) {
        let wanted = Self.normalized(name)
        fields.removeAll { Self.normalized($0.name) == wanted }
    }

    /// Lowercased, with `_` as `-`.
    static func normalized(_ name: String) -> String {
        String(name.lowercased().map { $0 == "_" ? "-" : $0 })
    }
}
