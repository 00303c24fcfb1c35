public import Foundation

/// Base64url without padding (RFC 4648 §5), as JWTs, PKCE and Sallyport's cookies and tunnel fields use it.
///
/// Foundation does the encoding; the alphabet is swapped byte by byte (every request carries an identity field
/// in this form, and `replacingOccurrences` cost a tenth of the relay's time on the JWT path).
public enum Base64URL {
    /// The base64url text of `data`.
    public static func encode(_ data: some DataProtocol) -> String {
        let standard = Data(data).base64EncodedData()
        var bytes = [UInt8]()
        bytes.reserveCapacity(standard.count)
        for byte in standard {
            switch byte {
            case UInt8(ascii: "+"): bytes.append(UInt8(ascii: "-"))
            case UInt8(ascii: "/"): bytes.append(UInt8(ascii: "_"))
            case UInt8(ascii: "="): continue
            default: bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The bytes of base64url `text` (padding optional), or nil when it is not base64url.
    public static func decode(_ text: String) -> Data? {
        var bytes = [UInt8]()
        bytes.reserveCapacity(text.utf8.count + 3)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "-"): bytes.append(UInt8(ascii: "+"))
            case UInt8(ascii: "_"): bytes.append(UInt8(ascii: "/"))
            default: bytes.append(byte)
            }
        }
        bytes.append(contentsOf: repeatElement(UInt8(ascii: "="), count: (4 - bytes.count % 4) % 4))
        return Data(base64Encoded: Data(bytes))
    }
}
