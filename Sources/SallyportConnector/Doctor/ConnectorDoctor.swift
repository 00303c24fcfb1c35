import Foundation
import Logging
public import NIOCore
public import NIOPosix
import NIOSSL
public import SallyportConfig
import SallyportKerberos
public import SallyportOps
import SallyportPluginAPI
import SallyportSSO
import SallyportTunnel
import SallyportWire

/// `sallyport doctor` on a connector host, in the order a connection needs things: the config and its files,
/// the certificate, the proxy, the relay (name, TCP, TLS, its welcome), the clocks, then each app of the
/// connector's group from this host (backend reachable; for kcd apps, the keytab and the KDC). It connects to
/// the relay as this connector, learns its apps, and serves nothing.
public struct ConnectorDoctor: Sendable {
    let config: ConnectorConfig
    let environment: [String: String]
    let group: any EventLoopGroup

    public init(config: ConnectorConfig, environment: [String: String], group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.config = config
        self.environment = environment
        self.group = group
    }

    /// Clock differences beyond this are a warning (Kerberos refuses 5 minutes; certificates tolerate less).
    static let clockTolerance: TimeInterval = 60

    public func run() async -> [DoctorStep] {
        var steps: [DoctorStep] = []
        let files = ConnectorFiles.check(self.config)
        if files.errors.isEmpty {
            steps.append(DoctorStep("files", .ok, "certificate, key and relay CA readable; the key is the certificate's"))
        } else {
            steps += files.errors.map { DoctorStep("files", .fail, $0) }
        }
        // The keytab matters only to kcd apps, which the relay names below: its warnings wait for them.
        let keytabWarnings = files.warnings.filter { $0.hasPrefix("kerberos.keytab:") }
        steps += files.warnings.filter { !$0.hasPrefix("kerberos.keytab:") }.map { DoctorStep("files", .warn, $0) }
        guard files.errors.isEmpty, let credentials = try? Credentials(config: self.config) else { return steps }
        steps.append(Self.certificateStep(credentials))

        let proxy: OutboundProxy?
        switch self.config.proxy.resolve(environment: self.environment, target: self.config.relay.host) {
        case .success(let resolved): proxy = resolved
        case .failure(let problem):
            steps.append(DoctorStep("proxy", .fail, problem.message, fix: "fix the proxy key or HTTPS_PROXY"))
            return steps
        }
        if let proxy {
            let reached = await self.reach(proxy.host, proxy.port)
            steps.append(
                reached == nil
                    ? DoctorStep("proxy", .ok, "\(proxy) (from \(proxy.source)) accepts connections")
                    : DoctorStep("proxy", .fail, "\(proxy) (from \(proxy.source)): \(reached!)", fix: "check the proxy address, or that this host may reach it")
            )
            if reached != nil { return steps }
        } else {
            steps.append(DoctorStep("proxy", .ok, "none: the relay is dialled directly"))
        }

        let learnt: ProbeSink.Learnt
        let probe = ProbeSink()
        var session = TunnelSession(
            index: 0, config: self.config, connectorName: self.config.name ?? ProcessInfo.processInfo.hostName, credentials: credentials, hub: TunnelHub(),
            delegator: ConnectorService.delegator(for: self.config.kerberos), apps: AppTable(handlers: .builtIn, logger: Self.quiet),
            forwarder: BackendForwarder(
                apps: AppTable(handlers: .builtIn, logger: Self.quiet), pool: BackendPool(maxIdlePerKey: 0, idleTimeout: .seconds(1), group: self.group),
                logger: Self.quiet, metrics: ConnectorMetrics(), accessLogger: Self.quiet
            ),
            dialer: RelayDialer(relay: self.config.relay, proxy: proxy), serverName: RelayRosterRunner.configuredTarget(self.config).serverName,
            group: self.group, logger: Self.quiet
        )
        session.probe = probe
        do {
            learnt = try await session.probeOnce(timeout: .seconds(20))
        } catch {
            var step = Self.relayFailure(error, relay: self.config.relay, proxy: proxy)
            if let detail = await RelayCertificateCheck.explain(
                error, dialer: RelayDialer(relay: self.config.relay, proxy: proxy), serverName: RelayRosterRunner.configuredTarget(self.config).serverName,
                relayCA: self.config.relayCA, group: self.group
            ) {
                step = DoctorStep("relay", .fail, detail, fix: step.fix)
            }
            steps.append(step)
            return steps
        }
        if let refusal = learnt.refusal {
            steps.append(DoctorStep("relay", .fail, "\(self.config.relay) refused this connector: \(refusal)", fix: "see the relay's message above"))
            return steps
        }
        guard let welcome = learnt.welcome else {
            steps.append(DoctorStep("relay", .fail, "\(self.config.relay) closed the connection without a welcome", fix: "check the relay's log"))
            return steps
        }
        steps.append(
            DoctorStep(
                "relay", .ok,
                "\(self.config.relay)\(proxy.map { " through \($0)" } ?? ""): TLS verified both ways; welcomed as \(welcome.name) (\(welcome.connectorID)) in group \(welcome.group)"
            )
        )
        if let time = welcome.time, let at = learnt.welcomedAt {
            let skew = at.timeIntervalSince1970 - time
            let words = "this host's clock is \(String(format: "%.1f", abs(skew))) s \(skew >= 0 ? "ahead of" : "behind") the relay's"
            steps.append(
                abs(skew) <= Self.clockTolerance
                    ? DoctorStep("clock", .ok, words)
                    : DoctorStep("clock", .warn, words, fix: "synchronise both with NTP (chrony, systemd-timesyncd): Kerberos refuses a 5-minute skew")
            )
        }
        guard let apps = learnt.apps else {
            steps.append(DoctorStep("apps", .warn, "the relay sent no app configuration", fix: "check the relay's apps directory and log"))
            return steps
        }
        if apps.apps.isEmpty { steps.append(DoctorStep("apps", .warn, "group \(welcome.group) has no apps", fix: "publish an app with connectorGroup: \(welcome.group)")) }
        if apps.apps.contains(where: { $0.sso.handler == "kcd" }) { steps += keytabWarnings.map { DoctorStep("files", .warn, $0) } }
        for app in apps.apps {
            steps.append(await self.backendStep(app))
            if app.sso.handler == "kcd" { steps.append(self.kerberosStep(app)) }
        }
        return steps
    }

    static let quiet = Logger(label: "sallyport.doctor", factory: { _ in SwiftLogNoOpLogHandler() })

    static func certificateStep(_ credentials: Credentials, now: Date = Date()) -> DoctorStep {
        let left = credentials.notAfter.timeIntervalSince(now)
        let until = "\(credentials.notAfter.formatted(.iso8601)) (\(Int(left / 86400)) days)"
        if left <= 0 {
            return DoctorStep(
                "certificate", .fail, "this connector's certificate expired on \(until)",
                fix: "register again: sallyport connectors token create on the relay, then sallyport connector register --force here"
            )
        }
        if now >= credentials.renewalDue {
            return DoctorStep(
                "certificate", .warn, "valid until \(until), and renewal was due at \(credentials.renewalDue.formatted(.iso8601))",
                fix: "the running connector renews over its tunnel: check that it runs and the relay's log for renewal errors"
            )
        }
        return DoctorStep("certificate", .ok, "valid until \(until); renews itself from \(credentials.renewalDue.formatted(.iso8601))")
    }

    /// Turns a failed probe connection into what went wrong and what to do.
    static func relayFailure(_ error: any Error, relay: HostPort, proxy: OutboundProxy?) -> DoctorStep {
        let target = "\(relay)"
        if let failure = error as? ProxyFailure { return DoctorStep("relay", .fail, failure.description, fix: "fix the proxy settings or ask for CONNECT to \(target)") }
        if let error = error as? NIOConnectionError {
            if error.dnsAError != nil || error.dnsAAAAError != nil, error.connectionErrors.isEmpty {
                return DoctorStep("relay", .fail, "\(relay.host) does not resolve", fix: "check the relay key and this host's DNS")
            }
            return DoctorStep("relay", .fail, "\(target) refused the connection", fix: "is the relay running, and its tunnel listener on this port? Does a firewall allow it?")
        }
        if let error = error as? ChannelError, case .connectTimeout = error {
            return DoctorStep("relay", .fail, "\(target) did not answer within 10 s", fix: "a firewall drops the connection, or the address is wrong")
        }
        if let words = TLSFailure.connectorMessage(error, relay: target) {
            let fix =
                TLSFailure.peerCertificateRefused(error)
                ? "check relayCA, and relayServerName when relay is an address the certificate does not list"
                : "the connector may have been removed: run sallyport connectors list on the relay, and register again if it is gone"
            return DoctorStep("relay", .fail, words, fix: fix)
        }
        if error is ProbeTimeout {
            return DoctorStep("relay", .fail, "\(target) accepted the connection but said nothing within 20 s", fix: "is \(target) the relay's tunnel listener?")
        }
        return DoctorStep("relay", .fail, "\(target): \(error)", fix: "check the relay's log")
    }

    /// Whether `host:port` accepts a TCP connection; nil when it does, else why not.
    func reach(_ host: String, _ port: Int) async -> String? {
        do {
            let channel = try await ClientBootstrap(group: self.group).connectTimeout(.seconds(5)).connect(host: host, port: port).get()
            try? await channel.close()
            return nil
        } catch let error as NIOConnectionError where error.connectionErrors.isEmpty {
            return "\(host) does not resolve"
        } catch let error as ChannelError {
            if case .connectTimeout = error { return "no answer within 5 s" }
            return "connection failed"
        } catch {
            return "connection refused"
        }
    }

    /// The app's backend from this host: TCP, and TLS as the connector verifies it for https.
    func backendStep(_ app: ConnectorApp) async -> DoctorStep {
        let pool = BackendPool(maxIdlePerKey: 0, idleTimeout: .seconds(1), group: self.group)
        defer { pool.closeAll() }
        let name = "app \(app.name)"
        do {
            try await pool.checkConnect(BackendPool.Lease(app: app, affinity: nil, clientBinding: nil, fresh: true))
            return DoctorStep(name, .ok, "\(app.internalURL.string) reachable from this host\(app.internalURL.scheme == "https" ? ", TLS verified" : "")")
        } catch {
            let (_, reason) = BackendForwarder.classify(connectError: error)
            let fixes: [ConnectorErrorReason: String] = [
                .backendDNS: "the backend's name does not resolve on this host: check internalURL and this host's DNS",
                .backendConnectTimeout: "no answer: a firewall between this host and the backend drops the connection",
                .backendTLSConfiguration: "check backendTLS in the app's file",
            ]
            let tls = error as? NIOSSLError
            return DoctorStep(
                name, .fail, "\(app.internalURL.string): \(tls == nil ? reason.rawValue : "TLS handshake failed (certificate not trusted, or a name mismatch)")",
                fix: tls != nil
                    ? "set backendTLS.caFile (or serverName) in the app's file to what the backend's certificate needs"
                    : fixes[reason] ?? "is the backend running, and does it listen on that port for this host?"
            )
        }
    }

    /// For a kcd app: the keytab and a TGT from the KDC, as the connector obtains them.
    func kerberosStep(_ app: ConnectorApp) -> DoctorStep {
        let name = "app \(app.name) kcd"
        let delegator = ConnectorService.delegator(for: self.config.kerberos)
        do {
            let (_, realm) = try delegator.connectorCredential(.kerberos)
            let spn = (try? KCDSettings(settings: HandlerCatalog.settings(of: app)))?.spn ?? "?"
            return DoctorStep(
                name, .ok,
                "keytab \(self.config.kerberos.keytab) read, TGT from the KDC of \(realm); SPN \(spn): check one user with sallyport check kcd --user USER --spn \(spn)"
            )
        } catch {
            return DoctorStep(name, .fail, "\(error)", fix: error.likelyFix)
        }
    }
}
