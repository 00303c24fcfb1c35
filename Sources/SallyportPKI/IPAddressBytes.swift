#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Turns an IP literal into the network-order bytes an `iPAddress` SAN holds, and tells IP literals from names.
public enum IPAddressBytes {
    public static func parse(_ text: String) throws -> [UInt8] {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        throw PKIError(.invalidIPAddress, "'\(text)' is not an IPv4 or IPv6 address literal")
    }

    /// Whether `text` is an IP literal rather than a DNS name.
    public static func isIPAddress(_ text: String) -> Bool {
        (try? parse(text)) != nil
    }
}
