import Foundation
import Synchronization

/// A network namespace the test owns, joined to the host by a veth pair: the host side has `hostAddress`, the
/// namespace `innerAddress` (a /30 of 10.213.0.0/16) and a default route through the host, so a process inside
/// reaches every address of the host (the relay's tunnel listener, backends) and nothing beyond it. ``cut()``
/// drops every packet in and out silently (nft), as a pulled cable or a stateful firewall losing its state
/// would: no FIN, no RST. Needs root, `ip` (iproute2) and `nft` (nftables).
public final class NetworkNamespace: @unchecked Sendable {
    /// `sp<pid>-<index>`.
    public let name: String
    /// The host end's address, e.g. 10.213.4.1.
    public let hostAddress: String
    /// The namespace end's address, e.g. 10.213.4.2.
    public let innerAddress: String
    private let hostInterface: String
    private var removed = false
    private let links = Mutex(0)

    /// Creates namespace `index` (0...3 per process) with its veth pair.
    public init(index: Int) throws {
        let pid = ProcessInfo.processInfo.processIdentifier
        // Four namespaces per process; processes with other pids get other subnets.
        precondition((0..<4).contains(index), "namespace index 0...3")
        let third = Int(pid) % 60 * 4 + index + 1
        self.name = "sp\(pid)-\(index)"
        self.hostInterface = "sph\(pid % 100_000)x\(index)"
        let inner = "spn\(pid % 100_000)x\(index)"
        self.hostAddress = "10.213.\(third).1"
        self.innerAddress = "10.213.\(third).2"
        // Leftovers of an earlier run with the same pid and index would make `add` fail.
        _ = try? Self.run(["netns", "del", self.name])
        _ = try? Self.run(["link", "del", self.hostInterface])
        do {
            try Self.run(["netns", "add", self.name])
            try Self.run(["link", "add", self.hostInterface, "type", "veth", "peer", "name", inner])
            try Self.run(["link", "set", inner, "netns", self.name])
            try Self.run(["addr", "add", "\(self.hostAddress)/30", "dev", self.hostInterface])
            try Self.run(["link", "set", self.hostInterface, "up"])
            try Self.run(["-n", self.name, "addr", "add", "\(self.innerAddress)/30", "dev", inner])
            try Self.run(["-n", self.name, "link", "set", inner, "up"])
            try Self.run(["-n", self.name, "link", "set", "lo", "up"])
            try Self.run(["-n", self.name, "route", "add", "default", "via", self.hostAddress])
        } catch {
            self.remove()
            throw error
        }
    }

    deinit { self.remove() }

    /// Joins this namespace to `other` by a veth pair of their own, as two hosts on one network: the `k`th
    /// link this namespace makes gets 10.214.X.(4k+1), the other end 10.214.X.(4k+2) (a /30; up to 8 links).
    /// The pair goes when either namespace is removed.
    public func link(to other: NetworkNamespace) throws -> (here: String, there: String) {
        let k = self.links.withLock { count in
            defer { count += 1 }
            return count
        }
        precondition(k < 8, "at most 8 links from one namespace")
        let parts = self.name.split(separator: "-")
        let third = self.hostAddress.split(separator: ".")[2]
        let here = "10.214.\(third).\(4 * k + 1)"
        let there = "10.214.\(third).\(4 * k + 2)"
        let stem = "spl\(parts[0].dropFirst(2).suffix(5))x\(parts[1])\(k)"
        let (a, b) = (stem + "a", stem + "b")
        try Self.run(["-n", self.name, "link", "add", a, "type", "veth", "peer", "name", b, "netns", other.name])
        try Self.run(["-n", self.name, "addr", "add", "\(here)/30", "dev", a])
        try Self.run(["-n", self.name, "link", "set", a, "up"])
        try Self.run(["-n", other.name, "addr", "add", "\(there)/30", "dev", b])
        try Self.run(["-n", other.name, "link", "set", b, "up"])
        return (here, there)
    }

    /// `executable arguments` run inside the namespace (through `ip netns exec`).
    public func command(_ executable: String, _ arguments: [String]) -> (executable: String, arguments: [String]) {
        ("/usr/sbin/ip", ["netns", "exec", self.name, executable] + arguments)
    }

    /// Drops every packet into and out of the namespace, silently.
    public func cut() throws {
        try Self.nft(self.name, ["add", "table", "inet", "sallyport_cut"])
        try Self.nft(self.name, ["add", "chain", "inet", "sallyport_cut", "in", "{ type filter hook input priority -300; policy drop; }"])
        try Self.nft(self.name, ["add", "chain", "inet", "sallyport_cut", "out", "{ type filter hook output priority -300; policy drop; }"])
    }

    /// Refuses connections from the namespace to `host:port` (TCP reset), as a firewall that lets this
    /// connector reach everything but one backend would.
    public func refuse(host: String, port: Int) throws {
        try Self.nft(self.name, ["add", "table", "inet", "sallyport_refuse"])
        try Self.nft(self.name, ["add", "chain", "inet", "sallyport_refuse", "out", "{ type filter hook output priority 0; }"])
        try Self.nft(self.name, ["add", "rule", "inet", "sallyport_refuse", "out", "ip", "daddr", host, "tcp", "dport", "\(port)", "reject", "with", "tcp", "reset"])
    }

    /// Refuses every connection out of the namespace (TCP reset, ICMP for the rest) except to `destinations`
    /// and loopback: a network whose firewall lets nothing out but the proxy (and the backends).
    public func allowOnly(_ destinations: [(host: String, port: Int)]) throws {
        try Self.nft(self.name, ["add", "table", "inet", "sallyport_egress"])
        try Self.nft(self.name, ["add", "chain", "inet", "sallyport_egress", "out", "{ type filter hook output priority 0; policy accept; }"])
        try Self.nft(self.name, ["add", "rule", "inet", "sallyport_egress", "out", "oifname", "lo", "accept"])
        for (host, port) in destinations {
            try Self.nft(self.name, ["add", "rule", "inet", "sallyport_egress", "out", "ip", "daddr", host, "tcp", "dport", "\(port)", "accept"])
        }
        try Self.nft(self.name, ["add", "rule", "inet", "sallyport_egress", "out", "meta", "l4proto", "tcp", "reject", "with", "tcp", "reset"])
        try Self.nft(self.name, ["add", "rule", "inet", "sallyport_egress", "out", "reject"])
    }

    /// Host names as processes in the namespace resolve them: `ip netns exec` mounts /etc/netns/NAME/hosts
    /// over /etc/hosts for them.
    public func setHosts(_ entries: [String: String]) throws {
        let directory = "/etc/netns/\(self.name)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // As a host's own /etc/hosts, it names the host itself: sudo looks its name up, and without it waits on a
        // DNS server this namespace cannot reach (20 s a command).
        let own = ProcessInfo.processInfo.hostName
        let lines = ["127.0.0.1 localhost", "::1 localhost", "127.0.1.1 \(own)"] + entries.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }
        try (lines.joined(separator: "\n") + "\n").write(toFile: directory + "/hosts", atomically: true, encoding: .utf8)
    }

    /// Lets packets through again.
    public func restore() throws {
        try Self.nft(self.name, ["delete", "table", "inet", "sallyport_cut"])
    }

    /// Deletes the namespace (its processes must have exited) and the host's end of the pair.
    public func remove() {
        guard !self.removed else { return }
        self.removed = true
        _ = try? Self.run(["netns", "del", self.name])
        _ = try? Self.run(["link", "del", self.hostInterface])
        try? FileManager.default.removeItem(atPath: "/etc/netns/\(self.name)")
    }

    @discardableResult
    static func run(_ arguments: [String], executable: String = "/usr/sbin/ip") throws -> String {
        let (status, text) = try Command.run(executable, arguments)
        guard status == 0 else {
            throw HarnessError(.commandFailed, "\(executable) \(arguments.joined(separator: " ")) exited \(status): \(text)")
        }
        return text
    }

    static func nft(_ namespace: String, _ arguments: [String]) throws {
        try Self.run(["netns", "exec", namespace, "/usr/sbin/nft"] + arguments)
    }
}
