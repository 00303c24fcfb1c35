import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// PostgreSQL from Debian's packages (`/usr/lib/postgresql/VERSION/bin`), a cluster of its own on 127.0.0.1 for
/// the tests: user `sallyport` with a password (SCRAM, as a production server would ask). `fsync=off`: nothing
/// here must survive a power cut, but commits do survive the server being killed (``kill()``).
///
/// PostgreSQL refuses to run as root, so a test run as root runs it as the `postgres` user (Debian's package
/// creates it) in a directory of its own under `/tmp`, outside the test's 0700 directory. A watchdog stops
/// the server and removes the directory when the test process ends, however it ends. Install it with
/// `scripts/setup-test-deps.sh`.
public final class PostgresServer: Sendable {
    /// Where the tests reach it: the first of the addresses it listens on.
    public var host: String { self.addresses[0] }
    /// The addresses it listens on (127.0.0.1 unless ``start(superuser:addresses:tls:)`` says otherwise).
    public let addresses: [String]
    public let port: Int
    /// The superuser the tests connect as, and its password.
    public let user: String
    public let password: String
    /// Whether it offers TLS (`ssl=on`, with the certificate given at start).
    public let offersTLS: Bool
    /// The server's directory: `data/`, `server.log`, `password` (a file holding the password, as relay.yaml's
    /// `passwordFile` names one).
    public let home: String
    private let process: Mutex<ChildProcess?>
    private let watchdog: Mutex<ChildProcess?>

    public var passwordFile: String { home + "/password" }
    public var logFile: String { home + "/server.log" }

    private init(port: Int, user: String, password: String, addresses: [String], offersTLS: Bool, home: String) {
        self.port = port
        self.user = user
        self.addresses = addresses
        self.offersTLS = offersTLS
        self.password = password
        self.home = home
        self.process = Mutex(nil)
        self.watchdog = Mutex(nil)
    }

    deinit {
        self.process.withLock { $0?.signal(SIGKILL) }
        self.watchdog.withLock { $0?.signal(SIGKILL) }
        try? FileManager.default.removeItem(atPath: self.home)
    }

    /// One server for the whole test process, started on first use; tests share it through databases of their
    /// own (``createDatabase(_:)``). Its watchdog removes it when the process ends.
    public static func shared() async throws -> PostgresServer {
        try await SharedServer.instance.get()
    }

    /// Creates a cluster (about a second) and starts it on a free port; returns once it accepts connections.
    /// - Parameters:
    ///   - superuser: the superuser initdb makes (its password is ``password``).
    ///   - addresses: where it listens; password (SCRAM) connections are allowed from 127.0.0.1 and, when an
    ///     address is a test network's (10.213.0.0/16, ``NetworkNamespace``), from those networks.
    ///   - tls: a server certificate (PEM, chain) and its key, offered to clients that ask for TLS.
    ///   - port: a free one unless given (5432, PostgreSQL's own, for a guide that names none).
    public static func start(
        superuser: String = "sallyport", addresses: [String] = ["127.0.0.1"], tls: (certificate: String, key: String)? = nil, port: Int? = nil
    ) async throws -> PostgresServer {
        let binaries = try Self.binaries()
        // As root, under /tmp whatever TMPDIR says: the postgres user must be able to reach the directory.
        let base = Self.runsAsRoot ? "/tmp" : ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/sallyport-pg-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw HarnessError(.fileSystem, "mkdtemp in \(base) failed: \(String(cString: strerror(errno)))")
        }
        let home = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let server = PostgresServer(
            port: try port ?? FreePort.next(), user: superuser, password: "pw-" + UUID().uuidString.prefix(12).lowercased(), addresses: addresses,
            offersTLS: tls != nil, home: home
        )
        if let tls {
            try FileManager.default.copyItem(atPath: tls.certificate, toPath: home + "/server.crt")
            try FileManager.default.copyItem(atPath: tls.key, toPath: home + "/server.key")
            chmod(home + "/server.key", 0o600)
        }
        try Data((server.password + "\n").utf8).write(to: URL(fileURLWithPath: server.passwordFile))
        if Self.runsAsRoot {
            // The postgres user owns its directory; root (the test) can still read the log and remove it.
            guard let account = getpwnam("postgres") else {
                throw HarnessError(.notFound, "no postgres user: run scripts/setup-test-deps.sh (as root) to install PostgreSQL")
            }
            for path in [home, server.passwordFile] + (tls == nil ? [] : [home + "/server.crt", home + "/server.key"]) {
                chown(path, account.pointee.pw_uid, account.pointee.pw_gid)
            }
        }
        let initdb = try ChildProcess.launch(
            Self.runsAsRoot ? "/usr/bin/setpriv" : binaries + "/initdb",
            Self.asPostgres([
                binaries + "/initdb", "-D", home + "/data", "-U", server.user, "--pwfile", server.passwordFile, "--auth", "scram-sha-256",
                "-E", "UTF8", "--locale", "C", "--no-sync",
            ]),
            environment: ["LC_ALL": "C"], logFile: home + "/initdb.log", currentDirectory: home
        )
        guard await initdb.waitForExit(timeout: .seconds(120)) == 0 else {
            throw HarnessError(.launchFailed, "initdb failed; \(initdb.logFile):\n\(initdb.log().suffix(2000))")
        }
        if addresses.contains(where: { $0.hasPrefix("10.213.") }) {
            let hba = try FileHandle(forWritingTo: URL(fileURLWithPath: home + "/data/pg_hba.conf"))
            try hba.seekToEnd()
            try hba.write(contentsOf: Data("host all all 10.213.0.0/16 scram-sha-256\n".utf8))
            try hba.close()
        }
        try await server.start()
        // The test process's end stops the server and removes its directory, even if the process crashed.
        let watchdog = try ChildProcess.launch(
            "/bin/sh",
            [
                "-c",
                "while [ -d /proc/\(getpid()) ]; do sleep 1; done; "
                    + "[ -f \"$1/data/postmaster.pid\" ] && kill -INT \"$(head -n 1 \"$1/data/postmaster.pid\")\" 2>/dev/null; "
                    + "sleep 2; rm -rf \"$1\"",
                "watchdog", home,
            ],
            logFile: "/dev/null"
        )
        server.watchdog.withLock { $0 = watchdog }
        return server
    }

    /// Starts the server again after ``stop()`` or ``kill()``, on the same port with the same data.
    public func start() async throws {
        let binaries = try Self.binaries()
        let process = try ChildProcess.launch(
            Self.runsAsRoot ? "/usr/bin/setpriv" : binaries + "/postgres",
            Self.asPostgres([
                binaries + "/postgres", "-D", home + "/data", "-h", host, "-p", String(port), "-k", home,
                "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=300",
                "-c", "log_min_messages=warning", "-c", "listen_addresses=\(addresses.joined(separator: ","))",
            ] + (offersTLS ? ["-c", "ssl=on", "-c", "ssl_cert_file=\(home)/server.crt", "-c", "ssl_key_file=\(home)/server.key"] : [])),
            environment: ["LC_ALL": "C"], logFile: logFile, currentDirectory: home
        )
        self.process.withLock { $0 = process }
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                throw HarnessError(.exitedEarly, "postgres exited at start; \(logFile):\n\(process.log().suffix(2000))")
            }
            if try await self.psql("SELECT 1", allowFailure: true) { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw HarnessError(.timedOut, "postgres did not accept connections within 60 s; \(logFile):\n\(process.log().suffix(2000))")
    }

    /// Stops the server as an administrator would (fast shutdown: sessions are ended, the data kept).
    public func stop() async {
        guard let process = self.process.withLock({ $0 }) else { return }
        process.signal(SIGINT)
        if await process.waitForExit(timeout: .seconds(30)) == nil {
            process.signal(SIGKILL)
            _ = await process.waitForExit(timeout: .seconds(10))
        }
    }

    /// Kills the server at once, as a crash would; ``start()`` recovers it.
    public func kill() async {
        guard let process = self.process.withLock({ $0 }) else { return }
        // Its backends too: orphans would keep the shared memory that a new postmaster refuses to share.
        let children = process.childPIDs()
        process.signal(SIGKILL)
        children.forEach(killProcess)
        _ = await process.waitForExit(timeout: .seconds(10))
    }

    /// Creates an empty database owned by ``user``.
    public func createDatabase(_ name: String) async throws {
        _ = try await self.psql("CREATE DATABASE \(Self.quoted(name))")
    }

    /// Drops a database, ending its sessions first.
    public func dropDatabase(_ name: String) async throws {
        _ = try await self.psql("DROP DATABASE IF EXISTS \(Self.quoted(name)) WITH (FORCE)")
    }

    /// Runs one statement with psql as ``user`` in `database`; returns its output (unaligned, tuples only).
    public func query(_ sql: String, database: String = "postgres") async throws -> String {
        let output = home + "/psql-\(UUID().uuidString).out"
        defer { try? FileManager.default.removeItem(atPath: output) }
        guard try await self.psql(sql, database: database, output: output) else { return "" }
        return (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
    }

    @discardableResult
    private func psql(_ sql: String, database: String = "postgres", allowFailure: Bool = false, output: String? = nil) async throws -> Bool {
        let log = output ?? home + "/psql-\(UUID().uuidString).log"
        defer { if output == nil { try? FileManager.default.removeItem(atPath: log) } }
        let process = try ChildProcess.launch(
            "/usr/bin/psql",
            ["-h", host, "-p", String(port), "-U", user, "-d", database, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            environment: ["PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"], logFile: log
        )
        let status = await process.waitForExit(timeout: .seconds(60))
        if status == 0 { return true }
        if allowFailure { return false }
        throw HarnessError(.launchFailed, "psql \(sql) failed (status \(status.map(String.init) ?? "timeout")): \(process.log().suffix(1000))")
    }

    // MARK: Installation

    private static var runsAsRoot: Bool { geteuid() == 0 }

    /// `setpriv` arguments that run `command` as the postgres user when the test runs as root.
    private static func asPostgres(_ command: [String]) -> [String] {
        runsAsRoot ? ["--reuid=postgres", "--regid=postgres", "--init-groups", "--"] + command : Array(command.dropFirst())
    }

    /// The newest installed server's bin directory.
    static func binaries() throws -> String {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted()
        guard let version = versions.last, FileManager.default.isExecutableFile(atPath: "\(root)/\(version)/bin/postgres"),
            FileManager.default.isExecutableFile(atPath: "/usr/bin/psql")
        else {
            throw HarnessError(.notFound, "PostgreSQL is not installed: run scripts/setup-test-deps.sh (as root) to install it")
        }
        return "\(root)/\(version)/bin"
    }

    static func quoted(_ identifier: String) -> String {
        "\"" + identifier.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

/// SIGKILL to a process that is not a ``ChildProcess`` (inside ``PostgresServer``, `kill` names its method).
private func killProcess(_ pid: Int32) {
    _ = kill(pid, SIGKILL)
}

/// The process-wide server behind ``PostgresServer/shared()``: started once, by whichever test asks first.
private actor SharedServer {
    static let instance = SharedServer()
    private var server: Task<PostgresServer, any Error>?

    func get() async throws -> PostgresServer {
        if let server { return try await server.value }
        let task = Task { try await PostgresServer.start() }
        self.server = task
        return try await task.value
    }
}
