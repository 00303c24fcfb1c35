import Foundation

/// One host of a multi-host test: a network namespace (or the machine's own network) and, bound over the machine's own paths for the
/// processes it runs, directories of its own (its `/etc/sallyport`, `/tmp`, ...), so a guide's commands run
/// on it as written, with the paths the guide names.
public struct TestHost: Sendable {
    public let name: String
    /// `nil`: the machine's own network.
    public let namespace: NetworkNamespace?
    /// Each `source` is bound over `target` (which must exist) in the host's mount namespace.
    public let directories: [Directory]
    /// Variables added to the environment of everything the host runs (`PATH` with the built `sallyport`).
    public let environment: [String: String]

    public struct Directory: Sendable {
        public let source: String
        public let target: String
        public init(source: String, target: String) {
            self.source = source
            self.target = target
        }
    }

    public init(name: String, namespace: NetworkNamespace?, directories: [Directory] = [], environment: [String: String] = [:]) {
        self.name = name
        self.namespace = namespace
        self.directories = directories
        self.environment = environment
    }

    /// Makes a host whose `targets` are directories of its own under `root` (`root/etc/sallyport` for
    /// `/etc/sallyport`), created empty; the targets are created on the machine if missing.
    public static func make(
        name: String, namespace: NetworkNamespace?, root: String, targets: [String], environment: [String: String] = [:]
    ) throws -> TestHost {
        var directories: [Directory] = []
        for target in targets {
            let source = root + target
            try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
            directories.append(Directory(source: source, target: target))
        }
        return TestHost(name: name, namespace: namespace, directories: directories, environment: environment)
    }

    /// `script` run by bash (`-e`) as root on this host, in `directory`, with `input` on its standard input and
    /// no controlling terminal (a program that would ask the terminal for a password reads `input` instead).
    public func shell(_ script: String, in directory: String, input: String = "") throws -> (status: Int32, output: String) {
        let inputFile = NSTemporaryDirectory() + "sallyport-host-input-\(UUID().uuidString)"
        try Data(input.utf8).write(to: URL(fileURLWithPath: inputFile))
        defer { try? FileManager.default.removeItem(atPath: inputFile) }
        // The input is opened before the host's directories hide the machine's /tmp.
        let command = self.wrapped(
            ["cd \(ServiceUnit.quote(directory))", "exec setsid bash -e -c \(ServiceUnit.quote(script)) <&3 3<&-"],
            prelude: ["exec 3< \(ServiceUnit.quote(inputFile))"]
        )
        return try Command.run(command.executable, command.arguments)
    }

    /// `commandLine` (shell words) started on this host, in `directory`, its output in `log`.
    public func launch(_ commandLine: String, in directory: String, log: String) throws -> ChildProcess {
        let command = self.wrapped(["cd \(ServiceUnit.quote(directory))", "exec \(commandLine)"])
        return try ChildProcess.launch(command.executable, command.arguments, logFile: log)
    }

    /// The unit's service started as systemd would start it, its output in `log`; with `sockets`, the
    /// listening sockets of its socket unit held by `socketHolder` (a script taking `--listen ADDRESS ... --
    /// COMMAND`) as systemd holds them.
    public func start(_ unit: ServiceUnit, sockets: ServiceUnit? = nil, socketHolder: [String] = [], log: String) throws -> ChildProcess {
        var prefix: [String] = []
        if let sockets { prefix = socketHolder + sockets.list("ListenStream").flatMap { ["--listen", $0] } + ["--"] }
        let script = try unit.sandboxScript(
            command: try unit.execStart(), hostDirectories: self.directories.map { ($0.source, $0.target) }, prefix: prefix
        )
        let command = self.inNamespace("/usr/bin/unshare", ["--mount", "--propagation", "private", "/bin/sh", "-c", script])
        return try ChildProcess.launch(command.executable, command.arguments, logFile: log)
    }

    /// `lines` run by sh in a mount namespace of the host's own, after its directories are bound and its
    /// environment exported.
    private func wrapped(_ lines: [String], prelude: [String] = []) -> (executable: String, arguments: [String]) {
        let binds = self.directories.map { "mount --bind \(ServiceUnit.quote($0.source)) \(ServiceUnit.quote($0.target))" }
        let exports = self.environment.sorted { $0.key < $1.key }.map { "export \($0.key)=\(ServiceUnit.quote($0.value))" }
        let setup = (["set -e"] + prelude + binds + exports + lines).joined(separator: "\n")
        return self.inNamespace("/usr/bin/unshare", ["--mount", "--propagation", "private", "/bin/sh", "-c", setup])
    }

    private func inNamespace(_ executable: String, _ arguments: [String]) -> (executable: String, arguments: [String]) {
        self.namespace?.command(executable, arguments) ?? (executable, arguments)
    }
}
