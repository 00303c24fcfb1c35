import ArgumentParser
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import SallyportConfig
import SallyportConnector
import SallyportRelay
import SallyportTunnel
import SallyportWire

// `sallyport relay init`, `sallyport connector register`, `sallyport connectors …` and `sallyport groups list`.
// The last two talk to the running relay's admin API (a Unix socket only the relay's user can open).

struct RelayInitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create everything a relay needs: connector CA, tunnel certificate, session key, relay.yaml, apps directory."
    )

    @Argument(help: "The relay's directory, e.g. /etc/sallyport (created; must not hold a relay.yaml).")
    var directory: String

    @Option(name: .long, help: "A host name or IP address connectors use to reach the tunnel listener (repeat for more; the first is printed in commands).")
    var name: [String] = []

    @Option(name: .long, help: "The public HTTPS listen address.")
    var publicListen = "0.0.0.0:443"

    @Option(name: .long, help: "The tunnel listen address.")
    var tunnelListen = "0.0.0.0:8443"

    @Option(name: .long, help: "Your public certificate chain (PEM); without it init makes a self-signed one for trials.")
    var publicCertificate: String?

    @Option(name: .long, help: "The key of --public-certificate.")
    var publicKey: String?

    @Option(name: .long, help: "Host names of the trial public certificate (repeat).")
    var trialHost: [String] = []

    @Option(
        name: .long,
        help: "The state directory (registry database, admin socket); default: /var/lib/sallyport for /etc/sallyport when the package made it (the service may write only there), else DIRECTORY/state."
    )
    var state: String?

    /// The packaged service writes only /var/lib/sallyport (ProtectSystem=strict): a relay made in /etc/sallyport
    /// keeps its state there unless told otherwise.
    var stateDirectory: String? {
        if let state = self.state { return state }
        let packaged = URL(fileURLWithPath: self.directory).standardizedFileURL.path == "/etc/sallyport"
        return packaged && FileManager.default.fileExists(atPath: "/var/lib/sallyport") ? "/var/lib/sallyport" : nil
    }

    func validate() throws {
        if (self.publicCertificate == nil) != (self.publicKey == nil) { throw ValidationError("give --public-certificate and --public-key together") }
        if self.name.isEmpty { throw ValidationError("give --name HOST: the name or address connectors use to reach this relay (repeat for more)") }
    }

    func run() async throws {
        let initialiser = RelayInit(
            directory: self.directory, tunnelNames: self.name, publicListen: self.publicListen, tunnelListen: self.tunnelListen,
            publicCertificate: self.publicCertificate.map { ($0, self.publicKey!) }, trialPublicNames: self.trialHost.isEmpty ? ["localhost"] : self.trialHost,
            stateDirectory: self.stateDirectory
        )
        do {
            let outcome = try initialiser.run()
            for file in outcome.files { print("wrote \(file.path) (mode \(String(file.mode, radix: 8)))") }
            if let trial = outcome.trialPublicCA {
                print("note: the public certificate is SELF-SIGNED, for trials only (clients trust it with --cacert \(trial)); replace tls/public.pem and tls/public.key with yours")
            }
            print(
                """

                Next:
                  sallyport relay --config \(outcome.configFile)
                  sallyport connectors token create --group default --config \(outcome.configFile)
                """
            )
        } catch {
            FileHandle.standardError.write(Data("sallyport relay init: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

struct ConnectorRegister: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "register",
        abstract: "Register this host as a connector with a one-time token; writes its key, certificate, the relay CA and connector.yaml."
    )

    @Option(name: .long, help: "The relay's tunnel address, HOST:PORT.")
    var relay: String

    @Option(name: .long, help: "The token from `sallyport connectors token create` on the relay.")
    var token: String

    @Option(name: .long, help: "This connector's name (default: the host name).")
    var name: String?

    @Option(name: .long, help: "Refuse unless the token registers into this group.")
    var group: String?

    @Option(name: .long, help: "The name on the relay's tunnel certificate, when --relay is an address it does not list.")
    var relayServerName: String?

    @Option(name: .long, help: "Where to write connector.yaml and the files it names.")
    var directory = "/etc/sallyport"

    @Flag(name: .long, help: "Replace an existing registration in --directory.")
    var force = false

    @Option(name: .long, help: "The HTTP proxy to the relay, http://[USER:PASSWORD@]HOST:PORT, or none (default: HTTPS_PROXY and NO_PROXY); written into connector.yaml.")
    var proxy: String?

    func run() async throws {
        let failure = { (message: String) -> ExitCode in
            FileHandle.standardError.write(Data("sallyport connector register: \(message)\n".utf8))
            return ExitCode(1)
        }
        let relay: HostPort
        let token: RegistrationToken
        do {
            relay = try HostPort(parsing: self.relay, file: "--relay")
            token = try RegistrationToken(parsing: self.token)
        } catch {
            throw failure("\(error)")
        }
        let choice: ConnectorConfig.ProxyChoice
        switch self.proxy {
        case nil: choice = .environment
        case "none": choice = .direct
        case let text?:
            switch OutboundProxy.parse(text, source: "--proxy") {
            case .success(let proxy): choice = .proxy(proxy)
            case .failure(let problem): throw failure("--proxy \(problem.message)")
            }
        }
        var client = RegistrationClient(
            relay: relay, serverName: self.relayServerName, token: token, name: self.name ?? ProcessInfo.processInfo.hostName, group: self.group,
            directory: self.directory, force: self.force
        )
        switch choice.resolve(environment: ProcessInfo.processInfo.environment, target: relay.host) {
        case .success(let proxy): client.proxy = proxy
        case .failure(let problem): throw failure(problem.message)
        }
        client.proxyLine = self.proxy
        do {
            let outcome = try await client.run()
            print("registered as connector \(outcome.connectorID) (\(outcome.name)) in group \(outcome.group)")
            for file in outcome.files { print("wrote \(file)") }
            print("\nStart it: sallyport connector --config \(outcome.configFile)")
        } catch {
            throw failure("\(error.description) [\(error.code)]")
        }
    }
}

/// Where the admin socket is: `--admin-socket`, or the one the relay's config names.
struct AdminOptions: ParsableArguments {
    @Option(name: .long, help: "The relay's configuration file (to find its admin socket).")
    var config = "/etc/sallyport/relay.yaml"

    @Option(name: .long, help: "The relay's admin socket (overrides --config).")
    var adminSocket: String?

    @Flag(name: .long, help: "Print the admin API's JSON instead of a table.")
    var json = false

    func socket() throws -> String {
        if let socket = self.adminSocket { return socket }
        return loadOrExit { () throws(ConfigError) in try ConfigLoader.loadRelay(file: self.config) }.adminSocket
    }

    /// Calls the admin API; exits with its message on an error status.
    func call(_ method: HTTPMethod, _ path: String, body: [String: any Sendable]? = nil) async throws -> Data {
        let json = try body.map { try JSONSerialization.data(withJSONObject: $0) }
        let client = AdminClient(socket: try self.socket())
        do {
            return try await client.call(method.rawValue, path, json: json)
        } catch {
            FileHandle.standardError.write(Data("sallyport: \(error)\n".utf8))
            throw ExitCode(error.unreachable ? 3 : 1)
        }
    }
}

extension AsyncParsableCommand {
    static func object(_ data: Data) -> [String: Any] { (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:] }
    static func objects(_ data: Data) -> [[String: Any]] { (try? JSONSerialization.jsonObject(with: data)) as? [[String: Any]] ?? [] }
}

struct ConnectorsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connectors",
        abstract: "Manage the relay's connectors (run on the relay host; talks to the running relay).",
        subcommands: [List.self, TokenCommand.self, Move.self, Drain.self, Remove.self, Add.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List connectors: id, name, host, group, version, state, tunnels, load, last seen, certificate expiry, config.")
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            let data = try await self.admin.call(.GET, "/v1/connectors")
            if self.admin.json { return print(String(decoding: data, as: UTF8.self)) }
            let rows = Self.objects(data).map { row -> [String] in
                [
                    "\(row["id"] ?? "")", "\(row["name"] ?? "")", "\(row["host"] ?? "")", "\(row["group"] ?? "")", "\(row["software"] ?? "")",
                    "\(row["state"] ?? "")", "\(row["tunnels"] ?? 0)", "\(row["requestsInFlight"] ?? 0)", "\(row["lastSeen"] ?? "never")",
                    "\(row["certificateNotAfter"] ?? "-")", "\(row["configGeneration"] ?? 0)",
                ]
            }
            Table.print(
                header: ["ID", "NAME", "HOST", "GROUP", "VERSION", "STATE", "TUNNELS", "IN-FLIGHT", "LAST SEEN", "CERTIFICATE EXPIRES", "CONFIG"], rows: rows
            )
        }
    }

    struct TokenCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "token", abstract: "One-time registration tokens.", subcommands: [Create.self, List.self, Delete.self]
        )

        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Create a token for a group; prints the command to run on the connector host.")
            @Option(name: .long, help: "The group the connector joins.") var group: String
            @Option(name: .long, help: "How long the token is valid (30m, 1h, 7d).") var expires = "1h"
            @Option(name: .long, help: "How many connectors may register with it.") var uses = 1
            @OptionGroup var admin: AdminOptions

            func run() async throws {
                let data = try await self.admin.call(.POST, "/v1/tokens", body: ["group": self.group, "expires": self.expires, "uses": self.uses])
                if self.admin.json { return print(String(decoding: data, as: UTF8.self)) }
                let token = Self.object(data)
                print("token \(token["id"] ?? "") for group \(token["group"] ?? ""), \(token["uses"] ?? 1) use(s), expires \(token["expiresAt"] ?? "")")
                print("Run on the connector host:\n\n  \(token["command"] ?? "")\n")
            }
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List tokens (never their secrets).")
            @OptionGroup var admin: AdminOptions

            func run() async throws {
                let data = try await self.admin.call(.GET, "/v1/tokens")
                if self.admin.json { return print(String(decoding: data, as: UTF8.self)) }
                Table.print(
                    header: ["ID", "GROUP", "STATE", "USES LEFT", "EXPIRES"],
                    rows: Self.objects(data).map { ["\($0["id"] ?? "")", "\($0["group"] ?? "")", "\($0["state"] ?? "")", "\($0["usesLeft"] ?? 0)/\($0["uses"] ?? 0)", "\($0["expiresAt"] ?? "")"] }
                )
            }
        }

        struct Delete: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Delete a token so no one can register with it.")
            @Argument(help: "The token's id (the part after sp1.).") var id: String
            @OptionGroup var admin: AdminOptions

            func run() async throws {
                _ = try await self.admin.call(.DELETE, "/v1/tokens/\(self.id)")
                print("deleted token \(self.id)")
            }
        }
    }

    struct Move: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Move a connector to another group, live.")
        @Argument(help: "The connector's id.") var id: String
        @Option(name: .long, help: "The new group.") var group: String
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            _ = try await self.admin.call(.POST, "/v1/connectors/\(self.id)/move", body: ["group": self.group])
            print("moved \(self.id) to group \(self.group)")
        }
    }

    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Drain a connector before restarting or upgrading it: no new requests go to it, those in flight finish.",
            discussion: """
                Refused while another connector of its group is draining, or when no other connector of the group takes requests \
                (--force overrides both). The drain ends when the connector's tunnels reconnect, that is when it restarts. \
                A rolling restart: for each connector of a group, drain --wait, restart it, wait until `connectors list` shows it connected.
                """
        )
        @Argument(help: "The connector's id.") var id: String
        @Flag(name: .long, help: "Wait until its requests in flight have finished (up to --timeout).") var wait = false
        @Option(name: .long, help: "How long --wait waits, in seconds.") var timeout: Int = 300
        @Flag(name: .long, help: "Drain even if it leaves the group without a serving connector or another is draining.") var force = false
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            let deadline = ContinuousClock.now + .seconds(self.timeout)
            var data = try await self.admin.call(.POST, "/v1/connectors/\(self.id)/drain", body: ["force": self.force])
            while self.wait, (Self.object(data)["inFlight"] as? Int ?? 0) > 0 {
                guard ContinuousClock.now < deadline else {
                    FileHandle.standardError.write(Data("sallyport: \(self.id) still has \(Self.object(data)["inFlight"] ?? "?") requests in flight after \(self.timeout) s\n".utf8))
                    throw ExitCode(1)
                }
                try await Task.sleep(for: .milliseconds(200))
                data = try await self.admin.call(.POST, "/v1/connectors/\(self.id)/drain", body: ["force": true])
            }
            if self.admin.json { return print(String(decoding: data, as: UTF8.self)) }
            let drain = Self.object(data)
            let left = drain["inFlight"] as? Int ?? 0
            print(
                left == 0
                    ? "\(self.id) (\(drain["name"] ?? "")) is drained and idle: restart it now"
                    : "\(self.id) (\(drain["name"] ?? "")) takes no new requests; \(left) in flight"
            )
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a connector: its tunnels close now and its certificates are refused.")
        @Argument(help: "The connector's id.") var id: String
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            _ = try await self.admin.call(.DELETE, "/v1/connectors/\(self.id)")
            print("removed \(self.id)")
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register a connector whose certificate your own CA issued (its CA must be in connectors.trustedCAs)."
        )
        @Option(name: .long, help: "The connector's certificate (PEM).") var certificate: String
        @Option(name: .long, help: "Its group.") var group: String
        @Option(name: .long, help: "Its name (default: the certificate's common name).") var name: String?
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            let pem = try String(contentsOfFile: self.certificate, encoding: .utf8)
            var body: [String: any Sendable] = ["certificate": pem, "group": self.group]
            if let name = self.name { body["name"] = name }
            let data = try await self.admin.call(.POST, "/v1/connectors", body: body)
            if self.admin.json { return print(String(decoding: data, as: UTF8.self)) }
            let record = Self.object(data)
            print("added connector \(record["id"] ?? "") (\(record["name"] ?? "")) in group \(record["group"] ?? "")")
        }
    }
}

struct GroupsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "groups", abstract: "Connector groups.", subcommands: [List.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List groups with their apps and active connectors; warns about a group with apps but no active connector.")
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            let data = try await self.admin.call(.GET, "/v1/groups")
            if self.admin.json { return print(String(decoding: data, as: UTF8.self)) }
            let groups = Self.objects(data)
            Table.print(
                header: ["GROUP", "APPS", "ACTIVE CONNECTORS", "CONNECTORS"],
                rows: groups.map { group in
                    [
                        "\(group["name"] ?? "")", ((group["apps"] as? [String]) ?? []).joined(separator: ","),
                        ((group["activeConnectors"] as? [String]) ?? []).joined(separator: ","), "\(group["connectors"] ?? 0)",
                    ]
                }
            )
            for group in groups {
                if let warning = group["warning"] as? String { print("warning: group \(group["name"] ?? ""): \(warning)") }
            }
        }
    }
}

/// Plain aligned columns.
enum Table {
    static func print(header: [String], rows: [[String]]) {
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        for row in [header] + rows {
            Swift.print(row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  "))
        }
    }
}

struct KCDCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "kcd", abstract: "Kerberos constrained delegation across the connectors.", subcommands: [Flush.self])

    struct Flush: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Drop cached Kerberos tickets on every connected connector: one user's (--user), or everyone's (--all). The next request asks the KDC."
        )
        @Option(name: .long, help: "The user, as the connector names them to the KDC (UPN or account name).") var user: String?
        @Flag(name: .long, help: "Every user's tickets.") var all = false
        @OptionGroup var admin: AdminOptions

        func validate() throws {
            if (self.user == nil) == !self.all { throw ValidationError("give --user U or --all") }
        }

        func run() async throws {
            var body: [String: any Sendable] = [:]
            if let user = self.user { body["user"] = user }
            let data = try await self.admin.call(.POST, "/v1/kcd/flush", body: body)
            if self.admin.json { return print(String(decoding: data, as: UTF8.self)) }
            let connectors = (Self.object(data)["connectors"] as? [String]) ?? []
            print("flushed \(self.user.map { "the tickets of \($0)" } ?? "all tickets") on \(connectors.count) connector(s): \(connectors.joined(separator: ", "))")
        }
    }
}
