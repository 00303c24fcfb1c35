/// Durations as written in config files: "500ms", "30s", "2m", "1h", "30d", or a bare whole number of seconds.
enum ConfigDuration {
    enum Problem: Error {
        case malformed, negative, tooLarge
    }

    static func parse(_ text: String) -> Result<Duration, Problem> {
        if text.hasPrefix("-") {
            guard case .success = parse(String(text.dropFirst())) else { return .failure(.malformed) }
            return .failure(.negative)
        }
        var digits = Substring(text)
        let units: [(suffix: String, milliseconds: Int)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        var scale = 1000
        for unit in units where digits.hasSuffix(unit.suffix) {
            digits = digits.dropLast(unit.suffix.count)
            scale = unit.milliseconds
            break
        }
        guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            return .failure(.malformed)
        }
        guard let value = Int(digits) else { return .failure(.tooLarge) }
        let (milliseconds, overflow) = value.multipliedReportingOverflow(by: scale)
        // Ten years is far beyond any sensible timeout and keeps arithmetic on the value safe.
        guard !overflow, milliseconds <= 10 * 365 * 86_400_000 else { return .failure(.tooLarge) }
        return .success(.milliseconds(milliseconds))
    }

    /// "30s", "2m", "500ms": the shortest exact spelling, for messages and docs.
    static func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let milliseconds = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        if milliseconds % 86_400_000 == 0 && milliseconds > 0 { return "\(milliseconds / 86_400_000)d" }
        if milliseconds % 3_600_000 == 0 && milliseconds > 0 { return "\(milliseconds / 3_600_000)h" }
        if milliseconds % 60_000 == 0 && milliseconds > 0 { return "\(milliseconds / 60_000)m" }
        if milliseconds % 1000 == 0 { return "\(milliseconds / 1000)s" }
        return "\(milliseconds)ms"
    }
}
