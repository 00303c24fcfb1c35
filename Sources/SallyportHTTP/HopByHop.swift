public import HTTPTypes

/// Hop-by-hop header handling (RFC 9110 §7.6.1).
///
/// A proxy must not forward headers that describe one connection: the fixed set below, and every header
/// the `Connection` header names. The relay applies this to what clients send, the connector to what
/// backends answer, so nothing connection-specific ever crosses the tunnel.
public enum HopByHop {
    /// Headers that are always connection-specific.
    public static let fixedNames: [HTTPField.Name] = [
        .connection,
        HTTPField.Name("Keep-Alive")!,
        HTTPField.Name("Proxy-Connection")!,
        .te,
        HTTPField.Name("Trailer")!,
        .transferEncoding,
        .upgrade,
        .proxyAuthorization,
        .proxyAuthenticate,
    ]

    /// Removes hop-by-hop headers, including those listed in `Connection`, from `fields`.
    public static func strip(_ fields: inout HTTPFields) {
        let listed = fields[values: .connection]
        if !listed.isEmpty {
            for value in listed {
                for token in value.split(separator: ",") {
                    let trimmed = token.trimmingASCIISpaces()
                    if let name = HTTPField.Name(String(trimmed)) {
                        fields[values: name] = []
                    }
                }
            }
        }
        for name in fixedNames where fields.contains(name) {
            fields[values: name] = []
        }
    }

    /// The lowercased tokens of the `Connection` header (for example `upgrade`, `close`).
    public static func connectionTokens(_ fields: HTTPFields) -> Set<String> {
        var tokens = Set<String>()
        for value in fields[values: .connection] {
            for token in value.split(separator: ",") {
                tokens.insert(String(token.trimmingASCIISpaces()).lowercased())
            }
        }
        return tokens
    }
}

extension Substring {
    /// Without the spaces and tabs (HTTP's optional whitespace) around it.
    public func trimmingASCIISpaces() -> Substring {
        var slice = self
        while let first = slice.first, first == " " || first == "\t" { slice = slice.dropFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice = slice.dropLast() }
        return slice
    }
}
