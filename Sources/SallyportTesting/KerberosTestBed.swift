import Foundation

/// The Kerberos test bed (`scripts/kerberos-testbed.sh`): a Samba AD KDC for realm CORP.EXAMPLE.TEST on
/// 127.0.0.1:88 with delegation accounts (or, with `KRB_TESTBED_KDC=mit` in the environment of ``start``,
/// an MIT krb5kdc on OpenLDAP with the same realm and accounts), and Apache httpd with mod_auth_gssapi
/// requiring Negotiate.
/// Install its packages with `scripts/setup-test-deps.sh`.
public final class KerberosTestBed: @unchecked Sendable {
    /// Everything the script printed (`KRB5_CONFIG`, `ALICE_PRINCIPAL`, `CONNECTOR_KEYTAB`, `APP_SPN`, …).
    public private(set) var values: [String: String]
    /// The directory that holds the domain, keytabs and logs.
    public let directory: String
    /// The settings `start` was given (ports, lifetimes), used again by ``startKDC()``.
    let environment: [String: String]
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("scripts/kerberos-testbed.sh").path

    /// Provisions the domain in `directory` (about 15 s the first time) and starts the KDC.
    public static func start(directory: String, environment: [String: String] = [:]) async throws -> KerberosTestBed {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let output = try await Self.run(["start", directory], environment: environment, log: directory + ".start.log")
        return KerberosTestBed(directory: directory, values: Self.parse(output), environment: environment)
    }

    init(directory: String, values: [String: String], environment: [String: String]) {
        self.directory = directory
        self.values = values
        self.environment = environment
    }

    /// Stops only the KDC (Apache keeps running).
    public func stopKDC() async throws {
        _ = try await Self.run(["stop", directory], environment: environment, log: directory + ".stop-kdc.log")
    }

    /// Starts the KDC again with the same settings (about a second).
    public func startKDC() async throws {
        _ = try await Self.run(["start", directory], environment: environment, log: directory + ".restart.log")
    }

    /// The KDC log's counts for `user` (`AS_REQ`, `S4U2SELF`, `S4U2PROXY`, …), or for everyone.
    public func count(user: String? = nil) async throws -> [String: Int] {
        let output = try await Self.run(["count", directory] + (user.map { [$0] } ?? []), environment: environment, log: directory + ".count.log")
        return Self.parse(output).compactMapValues { Int($0) }
    }

    /// Enables or disables a user's account in the directory (as an administrator would in AD).
    public func setUser(_ name: String, enabled: Bool) async throws {
        _ = try await Self.run(["user", directory, enabled ? "enable" : "disable", name], environment: environment, log: directory + ".user.log")
    }

    /// Value of a `KEY=VALUE` line.
    public subscript(key: String) -> String? { values[key] }

    /// Starts Apache on 127.0.0.1:`port`.
    public func startApache(port: Int) async throws {
        let output = try await Self.run(["apache", directory, String(port)], environment: [:], log: directory + ".apache.log")
        values.merge(Self.parse(output)) { _, new in new }
    }

    /// Stops Apache and the KDC.
    public func stop() async {
        _ = try? await Self.run(["apache-stop", directory], environment: [:], log: directory + ".apache-stop.log")
        _ = try? await Self.run(["stop", directory], environment: [:], log: directory + ".stop.log")
    }

    static func parse(_ output: String) -> [String: String] {
        var values: [String: String] = [:]
        for line in output.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "="), line[..<equals].allSatisfy({ $0.isUppercase || $0.isNumber || $0 == "_" }) else { continue }
            values[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return values
    }

    static func run(_ arguments: [String], environment: [String: String], log: String) async throws -> String {
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { _, new in new }
        let stdout = log + ".out"
        let process = try ChildProcess.launch("/bin/bash", [script] + arguments, environment: env, stdout: stdout, stderr: log, currentDirectory: nil)
        guard let status = await process.waitForExit(timeout: .seconds(180)) else {
            await process.terminate()
            throw HarnessError(.timedOut, "kerberos-testbed.sh \(arguments.joined(separator: " ")) did not finish in 180 s")
        }
        let output = (try? String(contentsOfFile: stdout, encoding: .utf8)) ?? ""
        guard status == 0 else {
            let errors = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw HarnessError(.commandFailed, "kerberos-testbed.sh \(arguments.joined(separator: " ")) exited \(status):\n\(tail(errors))")
        }
        return output
    }
}
