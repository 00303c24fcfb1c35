import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Hands out TCP ports that are free on 127.0.0.1 right now.
///
/// Ports are chosen at random **below the kernel's ephemeral range** (`/proc/sys/net/ipv4/ip_local_port_range`),
/// which outgoing connections take their source ports from: between the probe and the caller's bind, no
/// client connection of any process (PostgreSQL clients, health checks, curl) can take the port. Each
/// candidate is bound once to see that it is free, then released; a port is never handed out twice in one
/// process. Another server may still take it meanwhile, so callers that start servers should retry with a
/// new port if binding fails. Where the range cannot be read, the kernel picks (port 0).
public enum FreePort {
    private static let given = LockedSet()

    /// Where ports are picked: from 10000 to just below the ephemeral range; nil to let the kernel pick.
    static let range: ClosedRange<Int>? = {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8),
            let low = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap({ Int($0) }), low > 11_024
        else { return nil }
        return 10_000...(low - 1)
    }()

    /// A free TCP port on 127.0.0.1.
    public static func next() throws -> Int {
        for _ in 0..<200 {
            guard let port = try probe(Self.range.map { Int.random(in: $0) } ?? 0) else { continue }
            if given.insert(port) {
                return port
            }
        }
        throw HarnessError(.notFound, "no unused TCP port found on 127.0.0.1 after 200 tries")
    }

    /// Binds `candidate` (0: any) and returns the port bound, or nil if it is in use.
    private static func probe(_ candidate: Int) throws -> Int? {
        #if canImport(Glibc)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
            let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else {
            throw HarnessError(.launchFailed, "socket() failed: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))

        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(candidate).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else {
            if candidate != 0, errno == EADDRINUSE || errno == EACCES { return nil }
            throw HarnessError(.launchFailed, "bind(127.0.0.1:\(candidate)) failed: \(String(cString: strerror(errno)))")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else {
            throw HarnessError(.launchFailed, "getsockname failed: \(String(cString: strerror(errno)))")
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// A set of ports behind a lock.
private final class LockedSet: @unchecked Sendable {
    private let lock = NSLock()
    private var ports = Set<Int>()

    /// Inserts `port`; false if it was already there.
    func insert(_ port: Int) -> Bool {
        lock.withLock { ports.insert(port).inserted }
    }
}
