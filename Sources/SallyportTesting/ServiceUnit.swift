public import Foundation

/// A systemd unit file, read as systemd reads the settings that decide how its service runs, so a test can run
/// the service the way the unit does on a machine without systemd as PID 1: as its `User=`, with its
/// capabilities and `NoNewPrivileges=`, on a read-only file system but for its writable paths
/// (`ProtectSystem=strict`), with a private /tmp and its `UMask=`, and with the sockets of its socket unit.
public struct ServiceUnit: Sendable {
    /// The unit file.
    public let path: String
    /// Every `Key=Value` line, in order, by key.
    public let settings: [String: [String]]

    public init(path: String) throws {
        self.path = path
        var settings: [String: [String]] = [:]
        for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
            let text = line.trimmingCharacters(in: .whitespaces)
            guard !text.hasPrefix("#"), !text.hasPrefix("["), let equals = text.firstIndex(of: "=") else { continue }
            settings[String(text[..<equals]), default: []].append(String(text[text.index(after: equals)...]))
        }
        self.settings = settings
    }

    /// The last value of `key` (systemd: a later line overrides), or nil.
    public func value(_ key: String) -> String? { self.settings[key]?.last }

    /// Space-separated values of every `key` line (`ReadWritePaths=`, `ListenStream=`…).
    public func list(_ key: String) -> [String] {
        (self.settings[key] ?? []).flatMap { $0.split(separator: " ").map(String.init) }
    }

    /// `ExecStart=` as an argument list. The units use no quoting, and this refuses any (it would need
    /// systemd's rules).
    public func execStart() throws -> [String] {
        let line = try self.require("ExecStart")
        guard !line.contains("\""), !line.contains("'"), !line.hasPrefix("-"), !line.hasPrefix("@") else {
            throw HarnessError(.commandFailed, "\(self.path): ExecStart uses quoting or prefixes this harness does not read: \(line)")
        }
        return line.split(separator: " ").map(String.init)
    }

    /// A setting the harness needs, or an error naming it.
    public func require(_ key: String) throws -> String {
        guard let value = self.value(key) else { throw HarnessError(.commandFailed, "\(self.path) has no \(key)=") }
        return value
    }

    /// Paths the service may write: `ReadWritePaths=`, and `/var/lib/NAME` for each `StateDirectory=NAME`.
    public var writablePaths: [String] {
        var paths = self.list("ReadWritePaths")
        for state in self.list("StateDirectory") where !paths.contains("/var/lib/\(state)") { paths.append("/var/lib/\(state)") }
        return paths
    }

    /// The capabilities named by `key` (`AmbientCapabilities`, `CapabilityBoundingSet`) as setpriv writes them
    /// (`net_bind_service`).
    func capabilities(_ key: String) -> [String] {
        self.list(key).map { $0.lowercased().replacingOccurrences(of: "cap_", with: "") }
    }

    /// A shell script (for `sh -c`) that, run as root inside a mount namespace of its own (`unshare --mount`),
    /// sets up the unit's sandbox and `exec`s `command` in it: `hostDirectories` bound first (a host's own
    /// /etc/sallyport, say), the writable paths, every other mount read-only but /proc, /sys and /dev, a
    /// private /tmp, the umask and file limit, a clean environment, then setpriv as `User=` with the unit's
    /// capabilities. `prefix` goes before setpriv (the socket unit's stand-in, which runs as root).
    public func sandboxScript(command: [String], hostDirectories: [(source: String, target: String)] = [], prefix: [String] = []) throws -> String {
        let user = try self.require("User")
        let group = self.value("Group") ?? user
        let writable = self.writablePaths
        var lines = ["set -e"]
        for (source, target) in hostDirectories { lines.append("mount --bind \(Self.quote(source)) \(Self.quote(target))") }
        for path in writable { lines.append("mkdir -p \(Self.quote(path)) && mount --bind \(Self.quote(path)) \(Self.quote(path))") }
        if self.value("ProtectSystem") == "strict" {
            let keep = writable.map(Self.quote).joined(separator: " ")
            lines.append(
                """
                findmnt -rn -o TARGET | while IFS= read -r m; do
                  case "$m" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
                  for w in \(keep); do [ "$m" = "$w" ] && continue 2; done
                  mount -o remount,bind,ro "$m"
                done
                """
            )
        } else if let protect = self.value("ProtectSystem") {
            throw HarnessError(.commandFailed, "\(self.path): ProtectSystem=\(protect) is not one this harness sets up")
        }
        if self.value("PrivateTmp") == "yes" {
            lines.append("mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp")
            lines.append("mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp")
        }
        if let umask = self.value("UMask") { lines.append("umask \(umask)") }
        // Up to the unit's limit, or this machine's hard limit where the harness may not raise it (a container).
        if let files = self.value("LimitNOFILE") { lines.append("ulimit -n \(files) 2>/dev/null || ulimit -n \"$(ulimit -Hn)\"") }
        let home = try Command.run("/usr/bin/getent", ["passwd", user]).output.split(separator: ":").dropFirst(5).first.map(String.init) ?? "/"
        var environment = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=\(home)", "USER=\(user)", "LOGNAME=\(user)"]
        environment += self.list("Environment")
        let ambient = self.capabilities("AmbientCapabilities")
        let bounding = self.capabilities("CapabilityBoundingSet")
        func set(_ capabilities: [String]) -> String { (["-all"] + capabilities.map { "+\($0)" }).joined(separator: ",") }
        var setpriv = ["setpriv", "--reuid=\(user)", "--regid=\(group)", "--init-groups", "--bounding-set=\(set(bounding))"]
        setpriv += ["--inh-caps=\(set(ambient))", "--ambient-caps=\(set(ambient))"]
        if self.value("NoNewPrivileges") == "yes" { setpriv.append("--no-new-privs") }
        let exec = ["exec", "env", "-i"] + environment + prefix + setpriv + ["--"] + command
        lines.append(exec.map(Self.quote).joined(separator: " "))
        return lines.joined(separator: "\n")
    }

    /// `text` quoted for sh.
    public static func quote(_ text: String) -> String {
        guard text.contains(where: { !($0.isLetter || $0.isNumber || "-_./=:,+@%".contains($0)) }) else { return text }
        return "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
