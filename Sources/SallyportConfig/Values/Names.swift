internal import Foundation

/// Checks for names and host names used across config files.
enum Names {
    /// App names and connector groups: `[a-z0-9][a-z0-9-]{0,62}`.
    static func isValidName(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard (1...63).contains(bytes.count), isLowerAlphanumeric(bytes[0]) else { return false }
        return bytes.allSatisfy { isLowerAlphanumeric($0) || $0 == UInt8(ascii: "-") }
    }

    static let nameRule = #"must be 1 to 63 lowercase letters, digits or "-", starting with a letter or digit"#

    /// A DNS name (letters, digits, "-" and "_" in dot-separated labels); compare after lowercasing.
    static func isValidDNSName(_ text: String) -> Bool {
        guard (1...253).contains(text.utf8.count) else { return false }
        return text.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            let bytes = Array(label.utf8)
            guard (1...63).contains(bytes.count), bytes.first != UInt8(ascii: "-"), bytes.last != UInt8(ascii: "-") else {
                return false
            }
            return bytes.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") }
        }
    }

    /// Dotted-quad IPv4 address.
    static func isIPv4(_ text: String) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4
            && parts.allSatisfy { part in
                !part.isEmpty && part.count <= 3 && part.utf8.allSatisfy(isDigit) && Int(part)! <= 255
            }
    }

    /// IPv6 address text (without brackets): hex groups, "::" at most once, optional trailing IPv4.
    static func isIPv6(_ text: String) -> Bool {
        guard text.contains(":"), text.utf8.count <= 45 else { return false }
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return false }
        var groups = 0
        for (halfIndex, half) in halves.enumerated() where !half.isEmpty {
            let parts = half.split(separator: ":", omittingEmptySubsequences: false)
            for (index, part) in parts.enumerated() {
                let isLast = halfIndex == halves.count - 1 && index == parts.count - 1
                if isLast && part.contains(".") {
                    guard isIPv4(String(part)) else { return false }
                    groups += 2
                } else {
                    guard (1...4).contains(part.count), part.utf8.allSatisfy(isHexDigit) else { return false }
                    groups += 1
                }
            }
        }
        return halves.count == 2 ? groups <= 7 : groups == 8
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
    private static func isHexDigit(_ byte: UInt8) -> Bool {
        isDigit(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte | 0x20)
    }
    private static func isLowerAlphanumeric(_ byte: UInt8) -> Bool {
        isDigit(byte) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
    }
    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        isDigit(byte) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20)
    }
}

/// A host as written in a URL or `host:port`: a DNS name, an IPv4 address or a bracketed IPv6 address.
enum HostSyntax {
    /// Returns the host lowercased and without brackets, or a message saying what is wrong.
    static func parse(_ text: String, bracketed: Bool) -> Result<String, HostProblem> {
        if bracketed {
            guard Names.isIPv6(text) else { return .failure(HostProblem("\(quoted("[\(text)]")) is not a valid IPv6 address")) }
            return .success(text.lowercased())
        }
        guard !text.isEmpty else { return .failure(HostProblem("the host is missing")) }
        if Names.isIPv6(text) {
            return .failure(HostProblem("an IPv6 address must be in brackets, like [\(text)]"))
        }
        let lowered = text.lowercased()
        guard Names.isIPv4(lowered) || Names.isValidDNSName(lowered) else {
            return .failure(HostProblem("\(quoted(text)) is not a valid host name or IP address"))
        }
        return .success(lowered)
    }

    /// `host` as it appears in a URL or `host:port`: IPv6 gets brackets.
    static func urlForm(_ host: String) -> String {
        host.contains(":") ? "[\(host)]" : host
    }
}

struct HostProblem: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// The config files' rules for values that also arrive on the command line and over the admin API.
public enum ValueRules {
    /// Nil if `text` is a valid connector group name, else what is wrong.
    public static func groupProblem(_ text: String) -> String? {
        Names.isValidName(text) ? nil : "group names follow the app name rule: \(Names.nameRule) (got \(quoted(text)))"
    }

    /// Nil if `text` can name a connector or a host (shown in logs and status), else what is wrong.
    public static func connectorNameProblem(_ text: String) -> String? {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_".unicodeScalars)
        guard !text.isEmpty, text.unicodeScalars.count <= 253, text.unicodeScalars.allSatisfy(allowed.contains) else {
            return "must be 1 to 253 letters, digits, \".\", \"-\" or \"_\" (got \(quoted(text)))"
        }
        return nil
    }

    /// A duration written as in config files ("30s", "1h", "30d"), or nil.
    public static func duration(_ text: String) -> Duration? {
        if case .success(let duration) = ConfigDuration.parse(text) { return duration }
        return nil
    }

    /// A duration as config files write it.
    public static func format(_ duration: Duration) -> String { ConfigDuration.format(duration) }
}
