import Foundation
public import HTTPTypes

/// The HTTP/1.1 WebSocket opening handshake (RFC 6455 §4.1), as the edge and the forwarder both judge it.
public enum WebSocketHandshake {
    public static let keyField = HTTPField.Name("Sec-WebSocket-Key")!
    public static let versionField = HTTPField.Name("Sec-WebSocket-Version")!

    /// A request with everything RFC 6455 §4.1 requires of an opening handshake: GET, `Upgrade: websocket`,
    /// `Connection: Upgrade`, version 13 and a key of 16 bytes in base64.
    public static func isValid(_ head: HTTPRequest) -> Bool {
        guard head.method == .get, let upgrade = head.headerFields[.upgrade], Self.namesWebSocket(upgrade),
            HopByHop.connectionTokens(head.headerFields).contains("upgrade"),
            head.headerFields[Self.versionField] == "13",
            let key = head.headerFields[Self.keyField], key.utf8.count == 24, Data(base64Encoded: key)?.count == 16
        else { return false }
        return true
    }

    /// Whether an `Upgrade` value lists `websocket` (any case) among its protocols.
    public static func namesWebSocket(_ upgrade: String) -> Bool {
        upgrade.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces).lowercased() == "websocket" }
    }
}
