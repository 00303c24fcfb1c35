import Foundation

/// tinyproxy from Debian's packages (`/usr/bin/tinyproxy`), run in the foreground as the outbound HTTP proxy a
/// connector reaches its relay through: `CONNECT` only to `connectPorts`, Basic authentication when
/// `credentials` are given, a log of every connection in `DIRECTORY/tinyproxy/tinyproxy.log`.
/// Install it with `scripts/setup-test-deps.sh`.
public final class ForwardProxy: @unchecked Sendable {
    /// Where it listens.
    public let host: String
    public let port: Int
    private let home: String
    private let process: ChildProcess

    static let executable = "/usr/bin/tinyproxy"

    private init(host: String, port: Int, home: String, process: ChildProcess) {
        self.host = host
        self.port = port
        self.home = home
        self.process = process
    }

    /// Starts tinyproxy on `host` (an address of this machine, e.g. a ``NetworkNamespace``'s host end).
    public static func start(
        directory: TestDirectory, host: String = "127.0.0.1", connectPorts: [Int], credentials: (user: String, password: String)? = nil,
        allow: [String] = ["127.0.0.1", "10.213.0.0/16"]
    ) async throws -> ForwardProxy {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw HarnessError(.notFound, "\(executable) is missing: run scripts/setup-test-deps.sh (as root) to install tinyproxy")
        }
        let home = directory.file("tinyproxy")
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        var failures: [String] = []
        for _ in 0..<3 {
            let port = try FreePort.next()
            var lines = [
                "Port \(port)", "Listen \(host)", "Timeout 60", "MaxClients 64", "LogLevel Connect", "DisableViaHeader Yes",
                "LogFile \"\(home)/tinyproxy.log\"", "PidFile \"\(home)/tinyproxy.pid\"",
            ]
            lines += allow.map { "Allow \($0)" }
            lines += connectPorts.map { "ConnectPort \($0)" }
            if let credentials { lines.append("BasicAuth \(credentials.user) \(credentials.password)") }
            let file = "\(home)/tinyproxy.conf"
            try (lines.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
            let process = try ChildProcess.launch(executable, ["-d", "-c", file], logFile: "\(home)/stdout.log")
            let proxy = ForwardProxy(host: host, port: port, home: home, process: process)
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline, process.isRunning {
                if (try? await Wait.forPort(port, host: host, timeout: .milliseconds(200))) != nil { return proxy }
            }
            failures.append("port \(port): \(process.log().suffix(500))")
            await proxy.stop()
        }
        throw HarnessError(.launchFailed, "tinyproxy did not start:\n\(failures.joined(separator: "\n"))")
    }

    /// `http://HOST:PORT`, with `user:password@` when given.
    public func url(credentials: (user: String, password: String)? = nil) -> String {
        "http://\(credentials.map { "\($0.user):\($0.password)@" } ?? "")\(self.host):\(self.port)"
    }

    /// tinyproxy's log: a `CONNECT` line per tunnel it opened, refusals with their reason.
    public func log() -> String {
        (try? String(contentsOfFile: "\(self.home)/tinyproxy.log", encoding: .utf8)) ?? ""
    }

    public func stop() async {
        await self.process.terminate(timeout: .seconds(5))
    }
}
