import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import SallyportConfig
import SallyportPKI
import SallyportTunnel
import SwiftASN1
import X509

/// Why this connector refuses the relay's certificate: it looks at the certificate once more, without
/// verifying it, and compares it with what verification wanted (BoringSSL says only
/// `CERTIFICATE_VERIFY_FAILED`). Runs only after such a failure; nothing is sent but a TLS handshake.
enum RelayCertificateCheck {
    /// For a connection that failed because this connector refused the relay's certificate: what is wrong with
    /// it. Nil for any other failure, or when the certificate shows nothing wrong.
    static func explain(_ error: any Error, dialer: RelayDialer, serverName: String, relayCA: String?, group: any EventLoopGroup) async -> String? {
        guard TLSFailure.peerCertificateRefused(error) else { return nil }
        return await Self.diagnose(dialer: dialer, serverName: serverName, relayCA: relayCA, group: group)
    }

    /// What is wrong with the certificate the relay presents to `serverName` (expired, another name, another
    /// CA than `relayCA`), or nil if it cannot tell.
    static func diagnose(dialer: RelayDialer, serverName: String, relayCA: String?, group: any EventLoopGroup) async -> String? {
        guard let leaf = await Self.peerCertificate(dialer: dialer, serverName: serverName, group: group) else { return nil }
        let relay = "\(dialer.relay)"
        let now = Date()
        if leaf.notValidAfter < now {
            return "the certificate \(relay) presents expired on \(leaf.notValidAfter.formatted(.iso8601)): renew the relay's tunnel certificate (tls/tunnel.pem)"
        }
        if leaf.notValidBefore > now {
            return "the certificate \(relay) presents is valid only from \(leaf.notValidBefore.formatted(.iso8601)): check this host's clock and the relay's"
        }
        let names = Self.names(leaf)
        if !names.isEmpty, !names.contains(serverName.lowercased()) {
            return "the certificate \(relay) presents names \(names.sorted().joined(separator: ", ")), not \(serverName): dial one of those names (relay: in connector.yaml), or set relayServerName"
        }
        if let relayCA, let text = try? String(contentsOfFile: relayCA, encoding: .utf8),
            let authorities = try? CertificateFacts.certificates(pem: text, source: relayCA),
            // Signed by none of them (names alone can match: two relays' CAs may be called alike).
            !authorities.contains(where: { $0.publicKey.isValidSignature(leaf.signature, for: leaf) })
        {
            return "the certificate \(relay) presents is issued by \(leaf.issuer), not by relayCA (\(relayCA)): is \(relay) this connector's relay, or did the relay's tunnel CA change?"
        }
        return nil
    }

    /// The DNS names and IP addresses a certificate is for, lowercased.
    static func names(_ certificate: Certificate) -> Set<String> {
        guard let alternatives = try? certificate.extensions.subjectAlternativeNames else { return [] }
        var names = Set<String>()
        for name in alternatives {
            switch name {
            case .dnsName(let dns): names.insert(dns.lowercased())
            case .ipAddress(let bytes):
                let octets = Array(bytes.bytes)
                if octets.count == 4 { names.insert(octets.map(String.init).joined(separator: ".")) }
            default: break
            }
        }
        return names
    }

    /// The leaf certificate the relay presents, taken without verifying it.
    static func peerCertificate(dialer: RelayDialer, serverName: String, group: any EventLoopGroup) async -> Certificate? {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        guard let context = try? NIOSSLContext(configuration: configuration) else { return nil }
        do {
            let channel = try await dialer.connect(group: group)
            defer { channel.close(promise: nil) }
            let certificate = try await channel.eventLoop.flatSubmit {
                let handshake = channel.eventLoop.makePromise(of: Void.self)
                do {
                    let sync = channel.pipeline.syncOperations
                    let hostname = BackendConnection.isIPAddress(serverName) ? nil : serverName
                    try sync.addHandler(NIOSSLClientHandler(context: context, serverHostname: hostname))
                    try sync.addHandler(HandshakeWatch(handshake))
                } catch {
                    handshake.fail(error)
                }
                return handshake.futureResult.flatMapThrowing { try channel.pipeline.syncOperations.nioSSL_peerCertificate()?.toDERBytes() }
            }.get()
            return try certificate.map { try Certificate(derEncoded: $0) }
        } catch {
            return nil
        }
    }

    /// Completes `promise` when the TLS handshake has.
    final class HandshakeWatch: ChannelInboundHandler, Sendable {
        typealias InboundIn = NIOAny
        let promise: EventLoopPromise<Void>

        init(_ promise: EventLoopPromise<Void>) { self.promise = promise }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if case TLSUserEvent.handshakeCompleted = event { self.promise.succeed() }
            context.fireUserInboundEventTriggered(event)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) { self.promise.fail(error) }
        func channelInactive(context: ChannelHandlerContext) {
            self.promise.fail(ChannelError.ioOnClosedChannel)
            context.fireChannelInactive()
        }
    }
}
