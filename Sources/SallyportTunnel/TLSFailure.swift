import NIOSSL

/// A TLS failure in words: what went wrong and what to do, without BoringSSL's error numbers and build paths
/// (`error:10000418:SSL routines:OPENSSL_internal:TLSV1_ALERT_UNKNOWN_CA at …/tls_record.cc:491`).
public enum TLSFailure {
    /// BoringSSL's reason names in `error` (`TLSV1_ALERT_UNKNOWN_CA`, `CERTIFICATE_VERIFY_FAILED`…), in order;
    /// empty when it is no TLS handshake failure.
    public static func reasons(_ error: any Error) -> [String] {
        // A failed handshake, or an alert read once it was done (a client learns that the server refused its
        // certificate only then): "Error: 268436504 error:10000418:SSL routines:OPENSSL_internal:TLSV1_ALERT_UNKNOWN_CA at /path:491"
        guard error is NIOSSLError || error is BoringSSLError else { return [] }
        return "\(error)".split(separator: "OPENSSL_internal:").dropFirst().compactMap { part in
            let name = part.prefix { $0.isUppercase || $0.isNumber || $0 == "_" }
            return name.isEmpty ? nil : String(name)
        }
    }

    /// Whether this side refused the peer's certificate (as opposed to the peer refusing ours).
    public static func peerCertificateRefused(_ error: any Error) -> Bool {
        if let error = error as? NIOSSLExtraError, error == .failedToValidateHostname { return true }
        return self.reasons(error).contains("CERTIFICATE_VERIFY_FAILED")
    }

    /// What a connector logs when its TLS handshake with the relay (`relay`, host:port) fails; nil for an error
    /// that is no TLS handshake failure. `peer` says more about a relay certificate this side refused, when
    /// it is known (``RelayCertificateCheck``).
    public static func connectorMessage(_ error: any Error, relay: String) -> String? {
        let reasons = self.reasons(error)
        if let error = error as? NIOSSLExtraError, error == .failedToValidateHostname {
            return "the certificate \(relay) presented does not name the host dialled: dial a name it lists (relay: in connector.yaml), or set relayServerName"
        }
        guard !reasons.isEmpty else {
            if let error = error as? NIOSSLError, case .uncleanShutdown = error {
                return "\(relay) closed the connection during TLS: is \(relay) the relay's tunnel listener (not its public port)?"
            }
            return nil
        }
        for reason in reasons {
            switch reason {
            case "TLSV1_ALERT_UNKNOWN_CA":
                return "\(relay) does not trust this connector's certificate (unknown CA): it was issued by another relay, or the relay's connector CA changed; register this connector again with a token from this relay"
            case "SSLV3_ALERT_CERTIFICATE_EXPIRED":
                return "\(relay) says this connector's certificate has expired: register it again with a new token (sallyport connector register --force)"
            case "SSLV3_ALERT_CERTIFICATE_REVOKED", "SSLV3_ALERT_BAD_CERTIFICATE", "TLSV1_ALERT_ACCESS_DENIED", "SSLV3_ALERT_CERTIFICATE_UNKNOWN":
                return "\(relay) refused this connector's certificate: check `sallyport connectors list` on the relay, and register again if it is gone"
            case "TLSV1_CERTIFICATE_REQUIRED", "PEER_DID_NOT_RETURN_A_CERTIFICATE":
                return "\(relay) asked for a connector certificate and got none: check certificate and key in connector.yaml"
            case "CERTIFICATE_VERIFY_FAILED":
                return "the certificate \(relay) presented is not one this connector trusts: it does not chain to relayCA, has expired, or does not name the host dialled"
            case "WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNEXPECTED_RECORD":
                return "\(relay) does not speak TLS on this port: is it the relay's tunnel listener (often :8443)?"
            case "NO_APPLICATION_PROTOCOL", "TLSV1_ALERT_NO_APPLICATION_PROTOCOL":
                return "\(relay) does not offer the tunnel protocol: is it the relay's tunnel listener, not its public port?"
            case "TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "NO_SHARED_CIPHER", "SSLV3_ALERT_HANDSHAKE_FAILURE":
                return "\(relay) and this connector share no TLS version or cipher: is something between them (a TLS-inspecting proxy) speaking for the relay?"
            default:
                continue
            }
        }
        return "the TLS handshake with \(relay) failed (\(reasons.joined(separator: ", ")))"
    }
}
