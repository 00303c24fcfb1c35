import Foundation
import NIOCore
import NIOHTTP1

/// An HTTP/1.1 request with an absolute-form target (`GET http://host/path HTTP/1.1`) names its host in the
/// target, and RFC 9112 §3.2.2 says that host counts, not the `Host` field. The HTTPTypes conversion keeps
/// `Host` and drops the target's host, so this puts the target's host into `Host` and its path into the
/// target first: routing then follows what the client actually asked for.
final class AbsoluteFormRewriter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(var head) = self.unwrapInboundIn(data), Self.isAbsoluteForm(head.uri) else {
            context.fireChannelRead(data)
            return
        }
        if let rewritten = Self.originForm(of: head.uri) {
            head.uri = rewritten.target
            head.headers.replaceOrAdd(name: "Host", value: rewritten.host)
        } else {
            // Unparseable, or with user info (`http://app@evil/`): an asterisk target, which Admission refuses
            // for having no path, rather than routing on a Host the target contradicts.
            head.uri = "*"
        }
        context.fireChannelRead(self.wrapInboundOut(.head(head)))
    }

    static func isAbsoluteForm(_ target: String) -> Bool {
        // Origin-form (`/…`), nearly every request, is told apart without building a string.
        guard target.utf8.first != UInt8(ascii: "/") else { return false }
        let lowered = target.prefix(8).lowercased()
        return lowered.hasPrefix("http://") || lowered.hasPrefix("https://")
    }

    /// The host and origin-form target of an absolute-form `http(s)` target; nil when it does not parse or
    /// carries user info.
    static func originForm(of target: String) -> (host: String, target: String)? {
        guard let components = URLComponents(string: target), let host = components.percentEncodedHost, !host.isEmpty,
            components.user == nil, components.password == nil
        else { return nil }
        let authority = components.port.map { "\(host):\($0)" } ?? host
        var origin = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        if let query = components.percentEncodedQuery { origin += "?" + query }
        return (authority, origin)
    }
}

@available(*, unavailable)
extension AbsoluteFormRewriter: Sendable {}
