extension HandlerContext {
    /// Reads the app's settings into `T`, reporting every problem at once: values of the wrong kind, missing
    /// required keys, and keys `T` does not read (typos), each by its key path (`headers.X-User`,
    /// `accounts[1].name`); the connector adds the file, line and column. A `String` setting also accepts a
    /// number or `true`/`false` as written; a `CaseIterable` enum lists its cases when a value is not one of
    /// them. An error your own `init(from:)` throws is reported at its key too (later keys of the same
    /// mapping are then not read).
    ///
    /// ```swift
    /// struct Settings: Decodable {
    ///     var realm: String
    ///     var mode: Mode = .always          // optional with a default: declare it `var … ?` or decode it yourself
    ///     enum Mode: String, Decodable, CaseIterable { case always, on401 }
    /// }
    /// let settings = try context.decodeSettings(Settings.self)
    /// ```
    public func decodeSettings<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        let report = SettingsReport()
        let decoder = SettingsDecoder(value: .map(self.settings), path: [], report: report)
        let value: T
        do {
            value = try T(from: decoder)
        } catch is SettingsDecoder.Abandoned {
            throw SettingsErrors(report.errors)
        } catch {
            report.add([], SettingsDecoder.describe(error))
            throw SettingsErrors(report.errors)
        }
        report.addUnread()
        guard report.errors.isEmpty else { throw SettingsErrors(report.errors) }
        return value
    }
}

/// What one decoding found: the errors, and for each mapping read through a keyed container, the keys read.
final class SettingsReport {
    private(set) var errors: [SettingsError] = []
    private var maps: [(path: [any CodingKey], keys: [String], read: Set<String>)] = []
    private var mapIndex: [String: Int] = [:]

    func add(_ path: [any CodingKey], _ message: String) {
        self.errors.append(SettingsError(key: SettingsDecoder.keyPath(path), message: message))
    }

    /// A mapping at `path` is read key by key; returns its slot for ``read(_:in:)``.
    func opened(_ path: [any CodingKey], keys: [String]) -> Int {
        let name = SettingsDecoder.keyPath(path)
        if let slot = self.mapIndex[name] { return slot }
        self.maps.append((path, keys, []))
        self.mapIndex[name] = self.maps.count - 1
        return self.maps.count - 1
    }

    func read(_ key: String, in slot: Int) { self.maps[slot].read.insert(key) }

    /// Every key of a mapping that the type never asked for.
    func addUnread() {
        for map in self.maps {
            let known = map.read.sorted()
            for key in map.keys where !map.read.contains(key) {
                let hint = known.isEmpty ? "" : "; known here: \(known.joined(separator: ", "))"
                self.add(map.path + [SettingsDecoder.Key(key)], "unknown setting\(hint)")
            }
        }
    }
}

/// A `Decoder` over ``SettingValue`` that records problems and goes on with a stand-in value where it can.
struct SettingsDecoder: Decoder {
    let value: SettingValue?
    let path: [any CodingKey]
    let report: SettingsReport
    /// Decoding a stand-in for a value already reported: nothing more is reported below it.
    var silent = false

    var codingPath: [any CodingKey] { self.path }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    /// Thrown up to ``HandlerContext/decodeSettings(_:)`` when decoding cannot go on; the report has the cause.
    struct Abandoned: Error {}

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int?
        init(_ string: String) { self.stringValue = string }
        init?(stringValue: String) { self.stringValue = stringValue }
        init(intValue: Int) {
            self.stringValue = "\(intValue)"
            self.intValue = intValue
        }
    }

    static func keyPath(_ path: [any CodingKey]) -> String {
        var text = ""
        for key in path {
            if let index = key.intValue {
                text += "[\(index)]"
            } else {
                text += text.isEmpty ? key.stringValue : ".\(key.stringValue)"
            }
        }
        return text
    }

    func fail(_ message: String) {
        if !self.silent { self.report.add(self.path, message) }
    }

    static func kind(_ value: SettingValue?) -> String {
        switch value {
        case nil, .null?: "nothing"
        case .string(let text)?: "\"\(text)\""
        case .int(let number)?: "\(number)"
        case .double(let number)?: "\(number)"
        case .bool(let flag)?: "\(flag)"
        case .list?: "a list"
        case .map?: "a mapping"
        }
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context), DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context),
            DecodingError.keyNotFound(_, let context):
            return context.debugDescription
        case let error as SettingsError:
            return error.message
        default:
            return "\(error)"
        }
    }

    func container<K: CodingKey>(keyedBy type: K.Type) throws -> KeyedDecodingContainer<K> {
        switch self.value {
        case .map(let map)?:
            let slot = self.silent ? nil : self.report.opened(self.path, keys: map.keys)
            return KeyedDecodingContainer(Keyed<K>(decoder: self, map: map, slot: slot))
        case nil, .null?:
            // A missing mapping already reported (or optional): read as empty.
            return KeyedDecodingContainer(Keyed<K>(decoder: self, map: [:], slot: nil))
        default:
            self.fail("expected a mapping of settings, found \(Self.kind(self.value))")
            var quiet = self
            quiet.silent = true
            return KeyedDecodingContainer(Keyed<K>(decoder: quiet, map: [:], slot: nil))
        }
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        switch self.value {
        case .list(let items)?:
            return Unkeyed(decoder: self, items: items)
        case nil, .null?:
            return Unkeyed(decoder: self, items: [])
        default:
            self.fail("expected a list, found \(Self.kind(self.value))")
            var quiet = self
            quiet.silent = true
            return Unkeyed(decoder: quiet, items: [])
        }
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { Single(decoder: self) }

    /// Decodes a child value; on a problem reports it and returns a stand-in so that the rest is still read.
    func child<T: Decodable>(_ type: T.Type, value: SettingValue?, key: any CodingKey) throws -> T {
        let decoder = SettingsDecoder(value: value, path: self.path + [key], report: self.report, silent: self.silent)
        do {
            return try decoder.decodeValue(type)
        } catch let abandoned as Abandoned {
            throw abandoned
        } catch {
            decoder.fail(Self.describe(error))
            var quiet = decoder
            quiet.silent = true
            guard let standIn = try? quiet.decodeValue(type) else { throw Abandoned() }
            return standIn
        }
    }

    /// The value as `T`: scalars here (reporting a mismatch and standing in), enums with their cases listed,
    /// anything else through its own `init(from:)`.
    func decodeValue<T: Decodable>(_ type: T.Type) throws -> T {
        if let scalar = self.scalar(type) { return scalar }
        if let cases = T.self as? any CaseIterable.Type, case .string? = self.value {
            do {
                return try T(from: self)
            } catch {
                let all = Self.cases(of: cases)
                let names = all.map { "\(($0 as? any RawRepresentable)?.rawValue ?? $0)" }
                self.fail("must be one of \(names.joined(separator: ", ")) (found \(Self.kind(self.value)))")
                guard let first = all.first as? T else { throw Abandoned() }
                return first
            }
        }
        return try T(from: self)
    }

    /// `T` when it is a scalar type the settings can hold; nil for other types.
    func scalar<T>(_ type: T.Type) -> T? {
        switch type {
        case is String.Type:
            switch self.value {
            case .string(let text)?: return text as? T
            case .int(let number)?: return "\(number)" as? T
            case .double(let number)?: return "\(number)" as? T
            case .bool(let flag)?: return "\(flag)" as? T
            default:
                self.fail("expected text, found \(Self.kind(self.value))")
                return "" as? T
            }
        case is Int.Type:
            switch self.value {
            case .int(let number)?: return number as? T
            case .double(let number)? where number.rounded() == number && abs(number) < 1e15: return Int(number) as? T
            default:
                self.fail("expected a whole number, found \(Self.kind(self.value))")
                return 0 as? T
            }
        case is Double.Type:
            switch self.value {
            case .double(let number)?: return number as? T
            case .int(let number)?: return Double(number) as? T
            default:
                self.fail("expected a number, found \(Self.kind(self.value))")
                return 0.0 as? T
            }
        case is Bool.Type:
            if case .bool(let flag)? = self.value { return flag as? T }
            self.fail("expected true or false, found \(Self.kind(self.value))")
            return false as? T
        case is Float.Type:
            return self.scalar(Double.self).map { Float($0) as? T } ?? nil
        case let integer as any BinaryInteger.Type:
            // Every other integer type decodes itself through a single value container: handled here.
            guard let number = self.scalar(Int.self) else { return nil }
            if let exact = Self.exactly(integer, number) as? T { return exact }
            self.fail("\(number) is out of range for this setting")
            return Self.exactly(integer, 0) as? T
        default:
            return nil
        }
    }

    static func cases<C: CaseIterable>(of type: C.Type) -> [Any] { type.allCases.map { $0 } }

    static func exactly<I: BinaryInteger>(_ type: I.Type, _ number: Int) -> I? { I(exactly: number) }

    struct Keyed<K: CodingKey>: KeyedDecodingContainerProtocol {
        let decoder: SettingsDecoder
        let map: SettingsMap
        let slot: Int?

        var codingPath: [any CodingKey] { self.decoder.path }
        var allKeys: [K] {
            for key in self.map.keys { self.read(key) }
            return self.map.keys.compactMap { K(stringValue: $0) }
        }

        func read(_ key: String) {
            if let slot { self.decoder.report.read(key, in: slot) }
        }

        func contains(_ key: K) -> Bool {
            self.read(key.stringValue)
            return self.map[key.stringValue] != nil
        }

        func decodeNil(forKey key: K) throws -> Bool {
            self.read(key.stringValue)
            switch self.map[key.stringValue] {
            case nil, .null?: return true
            default: return false
            }
        }

        func decode<T: Decodable>(_ type: T.Type, forKey key: K) throws -> T {
            self.read(key.stringValue)
            let value = self.map[key.stringValue]
            if value == nil || value == .null {
                let decoder = SettingsDecoder(value: nil, path: self.decoder.path + [key], report: self.decoder.report, silent: self.decoder.silent)
                decoder.fail("required setting is missing")
                var quiet = decoder
                quiet.silent = true
                guard let standIn = try? quiet.decodeValue(type) else { throw Abandoned() }
                return standIn
            }
            return try self.decoder.child(type, value: value, key: key)
        }

        func nestedContainer<N: CodingKey>(keyedBy type: N.Type, forKey key: K) throws -> KeyedDecodingContainer<N> {
            self.read(key.stringValue)
            return try self.childDecoder(key).container(keyedBy: type)
        }

        func nestedUnkeyedContainer(forKey key: K) throws -> any UnkeyedDecodingContainer {
            self.read(key.stringValue)
            return try self.childDecoder(key).unkeyedContainer()
        }

        func superDecoder() throws -> any Decoder { self.decoder }
        func superDecoder(forKey key: K) throws -> any Decoder {
            self.read(key.stringValue)
            return self.childDecoder(key)
        }

        func childDecoder(_ key: K) -> SettingsDecoder {
            SettingsDecoder(value: self.map[key.stringValue], path: self.decoder.path + [key], report: self.decoder.report, silent: self.decoder.silent)
        }
    }

    struct Unkeyed: UnkeyedDecodingContainer {
        let decoder: SettingsDecoder
        let items: [SettingValue]
        var currentIndex = 0

        var codingPath: [any CodingKey] { self.decoder.path }
        var count: Int? { self.items.count }
        var isAtEnd: Bool { self.currentIndex >= self.items.count }

        mutating func next() throws -> (SettingValue, Key) {
            guard !self.isAtEnd else {
                throw DecodingError.valueNotFound(Any.self, .init(codingPath: self.codingPath, debugDescription: "the list has too few items"))
            }
            defer { self.currentIndex += 1 }
            return (self.items[self.currentIndex], Key(intValue: self.currentIndex))
        }

        mutating func decodeNil() throws -> Bool {
            guard !self.isAtEnd, self.items[self.currentIndex] == .null else { return false }
            self.currentIndex += 1
            return true
        }

        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
            let (value, key) = try self.next()
            return try self.decoder.child(type, value: value, key: key)
        }

        mutating func nestedContainer<N: CodingKey>(keyedBy type: N.Type) throws -> KeyedDecodingContainer<N> {
            let (value, key) = try self.next()
            return try SettingsDecoder(value: value, path: self.decoder.path + [key], report: self.decoder.report, silent: self.decoder.silent)
                .container(keyedBy: type)
        }

        mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
            let (value, key) = try self.next()
            return try SettingsDecoder(value: value, path: self.decoder.path + [key], report: self.decoder.report, silent: self.decoder.silent)
                .unkeyedContainer()
        }

        mutating func superDecoder() throws -> any Decoder {
            let (value, key) = try self.next()
            return SettingsDecoder(value: value, path: self.decoder.path + [key], report: self.decoder.report, silent: self.decoder.silent)
        }
    }

    struct Single: SingleValueDecodingContainer {
        let decoder: SettingsDecoder
        var codingPath: [any CodingKey] { self.decoder.path }

        func decodeNil() -> Bool {
            switch self.decoder.value {
            case nil, .null?: true
            default: false
            }
        }

        func decode<T: Decodable>(_ type: T.Type) throws -> T {
            if let scalar = self.decoder.scalar(type) { return scalar }
            return try T(from: self.decoder)
        }
    }
}

/// A mapping of settings read in the app file's order (a `Dictionary` loses the order), e.g. header names
/// and their templates: `var headers: OrderedSettings<String>`.
public struct OrderedSettings<Value: Decodable & Sendable>: Decodable, Sendable, Sequence {
    /// The keys and values in file order.
    public var entries: [(key: String, value: Value)]

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: SettingsDecoder.Key.self)
        self.entries = try container.allKeys.map { ($0.stringValue, try container.decode(Value.self, forKey: $0)) }
    }

    /// The value of `key`, if present.
    public subscript(key: String) -> Value? { self.entries.first { $0.key == key }?.value }
    public var count: Int { self.entries.count }
    public func makeIterator() -> IndexingIterator<[(key: String, value: Value)]> { self.entries.makeIterator() }
}
