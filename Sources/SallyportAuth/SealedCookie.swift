import Crypto
import Foundation
import HTTPTypes
import SallyportHTTP

/// Checks `sessions.keyFile` as the relay reads it: nil when usable, else what is wrong and how to make one.
public func sessionKeyFileProblem(_ path: String) -> String? {
    do {
        _ = try CookieSealer.key(fromFile: path)
        return nil
    } catch {
        return "\(error)"
    }
}

/// Values sealed into cookies with AES-GCM: confidential, and any change (or a cookie moved to another name
/// or host) fails to open. The key never leaves the relay.
struct CookieSealer: Sendable {
    let key: SymmetricKey

    /// A 256-bit key from a file holding it in base64, or a random one.
    static func key(fromFile path: String?) throws -> SymmetricKey {
        guard let path else { return SymmetricKey(size: .bits256) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw AuthSetupError("cannot read sessions.keyFile \(path); create it with: head -c 32 /dev/urandom | base64 > \(path)")
        }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let bytes = Data(base64Encoded: text), bytes.count == 32 else {
            throw AuthSetupError("sessions.keyFile \(path) must hold 32 random bytes in base64 (head -c 32 /dev/urandom | base64)")
        }
        return SymmetricKey(data: bytes)
    }

    /// `context` binds the value to where it is used (cookie name and host).
    func seal(_ value: some Encodable, context: String) -> String? {
        guard let plaintext = try? JSONEncoder().encode(value),
            let box = try? AES.GCM.seal(plaintext, using: key, authenticating: Data(context.utf8)),
            let combined = box.combined
        else { return nil }
        return Base64URL.encode(combined)
    }

    /// The value, or nil when the text was not sealed by this key for this context (tampered, foreign, truncated).
    func open<T: Decodable>(_ text: String, as type: T.Type, context: String) -> T? {
        guard let combined = Base64URL.decode(text),
            let box = try? AES.GCM.SealedBox(combined: combined),
            let plaintext = try? AES.GCM.open(box, using: key, authenticating: Data(context.utf8))
        else { return nil }
        return try? JSONDecoder().decode(T.self, from: plaintext)
    }
}

extension Base64URL {
    /// `bytes` random bytes, base64url.
    static func random(bytes: Int = 32) -> String {
        var generator = SystemRandomNumberGenerator()
        return encode((0..<bytes).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
    }
}

/// Request cookies and `Set-Cookie` values.
enum Cookies {
    /// The value of cookie `name` in the request's `Cookie` fields (the first if sent twice).
    static func value(_ name: String, in fields: HTTPFields) -> String? {
        for field in fields[values: .cookie] {
            for pair in field.split(separator: ";") {
                let trimmed = pair.drop { $0 == " " }
                guard let equals = trimmed.firstIndex(of: "="), trimmed[..<equals] == name else { continue }
                return String(trimmed[trimmed.index(after: equals)...])
            }
        }
        return nil
    }

    /// A host-only, secure, script-invisible cookie (`__Host-` names require exactly this).
    static func set(_ name: String, value: String, maxAge: Int) -> String {
        "\(name)=\(value); Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=\(max(0, maxAge))"
    }

    static func clear(_ name: String) -> String { set(name, value: "", maxAge: 0) }

    /// Browsers keep about 4 KB per cookie; a session with many groups is split over `name`, `name.1`, …
    /// (`.` never occurs in provider names, so one provider's chunk is never another provider's cookie).
    static let chunkSize = 3800
    /// At most this many cookies per value (about 19 KB, well within the edge's default 32 KB of headers).
    static let maxChunks = 5

    /// `Set-Cookie` values for a value that may need several cookies; nil when it is too big even then.
    /// Chunks left over from a longer value in `request` are cleared.
    /// The first cookie starts with the count (`3~…`), so stale extra chunks are never read.
    static func setChunked(_ name: String, value: String, maxAge: Int, replacing request: HTTPFields = [:]) -> [String]? {
        let count = (value.utf8.count + chunkSize - 1) / chunkSize
        guard count <= maxChunks else { return nil }
        var chunks: [Substring] = []
        var rest = Substring(value)
        while !rest.isEmpty {
            chunks.append(rest.prefix(chunkSize))
            rest = rest.dropFirst(chunkSize)
        }
        var cookies = [set(name, value: "\(chunks.count)~" + chunks[0], maxAge: maxAge)]
        for index in 1..<max(1, chunks.count) {
            cookies.append(set("\(name).\(index)", value: String(chunks[index]), maxAge: maxAge))
        }
        // Remove the tail of a longer earlier value the browser still sends.
        for index in chunks.count..<maxChunks where Self.value("\(name).\(index)", in: request) != nil {
            cookies.append(clear("\(name).\(index)"))
        }
        return cookies
    }

    /// A value written by ``setChunked(_:value:maxAge:)``, joined again; nil when a part is missing.
    static func chunkedValue(_ name: String, in fields: HTTPFields) -> String? {
        guard let first = value(name, in: fields), let tilde = first.firstIndex(of: "~"),
            let count = Int(first[..<tilde]), (1...maxChunks).contains(count)
        else { return nil }
        var joined = String(first[first.index(after: tilde)...])
        for index in 1..<count {
            guard let part = value("\(name).\(index)", in: fields) else { return nil }
            joined += part
        }
        return joined
    }

    /// `Set-Cookie` values that remove a chunked value.
    static func clearChunked(_ name: String) -> [String] {
        [clear(name)] + (1..<maxChunks).map { clear("\(name).\($0)") }
    }
}

/// A problem in the relay's authentication settings found at start (secret or key file unreadable).
public struct AuthSetupError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
