/// Text from outside (a token's issuer or key id, an OIDC error, a connector's name or error message) made
/// safe to log: control characters are escaped, so no one can forge log lines or terminal sequences, and
/// long text is cut, so no one can fill the log.
public enum LogText {
    /// `text` with control characters (C0, DEL, C1, line and paragraph separators) written as `\u{XX}`, cut to
    /// `limit` characters with a note of how much was left out.
    public static func escaped(_ text: some StringProtocol, limit: Int = 256) -> String {
        var result = ""
        var count = 0
        for scalar in text.unicodeScalars {
            if count >= limit {
                let rest = text.unicodeScalars.count - count
                result += "…(\(rest) more characters)"
                break
            }
            switch scalar.value {
            case 0x00...0x1F, 0x7F...0x9F, 0x2028, 0x2029:
                result += "\\u{" + String(scalar.value, radix: 16) + "}"
            default:
                result.unicodeScalars.append(scalar)
            }
            count += 1
        }
        return result
    }
}
