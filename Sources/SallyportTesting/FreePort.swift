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
/// A port is found by binding port 0 and reading what the kernel chose, then closing the socket; a port is
/// never handed out twice in one process. Another process may still take it before the caller binds, so
/// callers that start servers should retry with a new port if binding fails.
public enum FreePort {
    private static let given = LockedSet()

    /// A free TCP port on 127.0.0.1.
    public static func next() throws -> Int {
        for _ in 0..<100 {
            let port = try probe()
            if given.insert(port) {
                return port
            }
        }
        throw HarnessError(.notFound, "no unused TCP port found on 127.0.0.1 after 100 tries")
    }

    private static func probe() throws -> Int {
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
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else {
            throw HarnessError(.launchFailed, "bind(127.0.0.1:0) failed: \(String(cString: strerror(errno)))")
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
