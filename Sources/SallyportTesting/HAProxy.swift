import Foundation

/// HAProxy from Debian's packages (`/usr/sbin/haproxy`), in the foreground as the TCP load balancer in front of
/// several relays: each frontend listens on a free port of 127.0.0.1 and spreads connections round-robin over
/// its servers, with health checks every 500 ms (two failures take a server out, one success puts it back) and
/// a failed connect retried on another server. TLS passes through untouched. Install it with
/// `scripts/setup-test-deps.sh`.
public final class HAProxy: @unchecked Sendable {
    /// Where each frontend listens, by name.
    public let ports: [String: Int]
    private let process: ChildProcess

    static let executable = "/usr/sbin/haproxy"

    private init(ports: [String: Int], process: ChildProcess) {
        self.ports = ports
        self.process = process
    }

    /// Starts HAProxy with one frontend per entry of `frontends` (name → the ports of 127.0.0.1 it balances
    /// over); returns once every frontend accepts connections. A frontend named in `readiness` checks its servers
    /// with `GET /readyz` on the given ports (one per server, in order) instead of a TCP connect: a relay that
    /// is not ready takes no users.
    public static func start(directory: TestDirectory, frontends: [String: [Int]], readiness: [String: [Int]] = [:]) async throws -> HAProxy {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw HarnessError(.notFound, "\(executable) is missing: run scripts/setup-test-deps.sh (as root) to install haproxy")
        }
        var ports: [String: Int] = [:]
        var lines = [
            "global", "  maxconn 4096",
            "defaults", "  mode tcp", "  timeout connect 2s", "  timeout client 1h", "  timeout server 1h", "  timeout check 1s",
            "  retries 2", "  option redispatch",
        ]
        for (name, servers) in frontends.sorted(by: { $0.key < $1.key }) {
            let port = try FreePort.next()
            ports[name] = port
            lines += ["frontend \(name)", "  bind 127.0.0.1:\(port)", "  default_backend \(name)", "backend \(name)", "  balance roundrobin"]
            let checks = readiness[name]
            if checks != nil { lines += ["  option httpchk GET /readyz", "  http-check expect status 200"] }
            lines += servers.enumerated().map { index, server in
                "  server s\(index) 127.0.0.1:\(server) check inter 500ms fall 2 rise 1" + (checks.map { " port \($0[index])" } ?? "")
            }
        }
        let file = try directory.write("haproxy/haproxy.cfg", lines.joined(separator: "\n") + "\n")
        let process = try ChildProcess.launch(executable, ["-db", "-f", file], logFile: directory.file("haproxy/haproxy.log"))
        let proxy = HAProxy(ports: ports, process: process)
        for port in ports.values {
            do {
                try await Wait.forPort(port, timeout: .seconds(10))
            } catch {
                await proxy.stop()
                throw HarnessError(.launchFailed, "haproxy did not listen on \(port): \(process.log().suffix(1000))")
            }
        }
        return proxy
    }

    /// HAProxy's own output (configuration warnings, servers going down and up).
    public func log() -> String { self.process.log() }

    public func stop() async {
        await self.process.terminate(timeout: .seconds(5))
    }
}
