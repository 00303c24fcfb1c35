import Glibc
import NIOCore

/// Listening sockets handed over by systemd (socket activation, `sd_listen_fds(3)`): `LISTEN_PID` names this
/// process, `LISTEN_FDS` counts descriptors from 3. The socket unit keeps them open across a restart, so
/// connections that arrive while the service restarts wait in the kernel's queue instead of being refused.
///
/// Taken once at start: the variables are removed and the descriptors marked close-on-exec, so no child
/// process (a plugin host) inherits them.
public struct SystemdSockets: Sendable {
    /// One inherited listening socket and the address it is bound to.
    public struct Socket: Sendable, Equatable {
        public let descriptor: CInt
        /// `host:port` (IPv6 in brackets), as `getsockname(2)` reports it.
        public let host: String
        public let port: Int

        public var address: String { self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)" }
    }

    /// The TCP sockets, in the order systemd passed them.
    public private(set) var sockets: [Socket]

    /// No sockets: a relay started by hand binds its own.
    public static let none = SystemdSockets(sockets: [])

    public init(sockets: [Socket]) { self.sockets = sockets }

    /// Reads and clears the environment. Fails when the variables are there but wrong (a socket that is not a
    /// listening TCP socket), so a unit mistake is named instead of ignored.
    public static func fromEnvironment() throws -> SystemdSockets {
        defer {
            unsetenv("LISTEN_PID")
            unsetenv("LISTEN_FDS")
            unsetenv("LISTEN_FDNAMES")
        }
        guard let pidText = getenv("LISTEN_PID").map({ String(cString: $0) }), let countText = getenv("LISTEN_FDS").map({ String(cString: $0) }) else {
            return .none
        }
        // Meant for another process (a parent that did not clear them): not ours to take.
        guard let pid = Int32(pidText), pid == getpid() else { return .none }
        guard let count = Int(countText), (0...64).contains(count) else {
            throw SocketActivationError(description: "systemd passed LISTEN_FDS=\(countText), not a number of sockets")
        }
        var sockets: [Socket] = []
        for descriptor in CInt(3)..<CInt(3 + count) {
            _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
            sockets.append(try Self.describe(descriptor))
        }
        return SystemdSockets(sockets: sockets)
    }

    /// The socket for a listener configured on `host:port`: the one on the same port whose address is the
    /// same, or a wildcard when the configured one is a wildcard too (systemd's `ListenStream=443` is `[::]:443`,
    /// relay.yaml's default `0.0.0.0:443`). Taken sockets are no longer offered.
    public mutating func take(host: String, port: Int) -> Socket? {
        let wildcards: Set<String> = ["0.0.0.0", "::", "*", ""]
        guard
            let index = self.sockets.firstIndex(where: { socket in
                socket.port == port && (socket.host == host || (wildcards.contains(host) && wildcards.contains(socket.host)))
            })
        else { return nil }
        return self.sockets.remove(at: index)
    }

    /// What the descriptor is bound to; an error unless it is a listening TCP socket.
    static func describe(_ descriptor: CInt) throws -> Socket {
        var listening: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        var type: CInt = 0
        var typeLength = socklen_t(MemoryLayout<CInt>.size)
        guard getsockopt(descriptor, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) == 0, listening == 1,
            getsockopt(descriptor, SOL_SOCKET, SO_TYPE, &type, &typeLength) == 0, type == CInt(SOCK_STREAM.rawValue)
        else {
            throw SocketActivationError(description: "systemd passed descriptor \(descriptor), which is not a listening stream socket: check the socket unit's ListenStream= lines")
        }
        var storage = sockaddr_storage()
        var size = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &size) } }
        guard named == 0 else {
            throw SocketActivationError(description: "systemd passed descriptor \(descriptor), whose address cannot be read: \(String(cString: strerror(errno)))")
        }
        // NIO reads the address fields.
        let address: SocketAddress
        switch CInt(storage.ss_family) {
        case AF_INET: address = SocketAddress(withUnsafeBytes(of: storage) { $0.load(as: sockaddr_in.self) }, host: "")
        case AF_INET6: address = SocketAddress(withUnsafeBytes(of: storage) { $0.load(as: sockaddr_in6.self) }, host: "")
        default:
            throw SocketActivationError(description: "systemd passed descriptor \(descriptor), which is not a TCP socket (ListenStream=PORT or ADDRESS:PORT)")
        }
        return Socket(descriptor: descriptor, host: address.ipAddress ?? "", port: address.port ?? 0)
    }
}

/// The sockets systemd passed cannot be used as they are; says what to change.
public struct SocketActivationError: Error, CustomStringConvertible {
    public let description: String
}
