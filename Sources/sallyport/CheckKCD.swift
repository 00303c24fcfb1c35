import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import SallyportConfig
import SallyportKCD
import SallyportConnector
import SallyportKerberos
import SallyportPluginAPI
import SallyportSSO

struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Diagnose single sign-on from this machine.",
        subcommands: [KCD.self]
    )

    struct KCD: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "kcd",
            abstract: "Run the Kerberos delegation exchange for one user and print each step.",
            discussion: """
                Steps: keytab, TGT, S4U2Self, S4U2Proxy, token. A failed step shows the KDC's error and the likely fix; \
                the exit status is 1. Uses krb5.conf (or KRB5_CONFIG) like the connector; KRB5_TRACE=/dev/stderr shows more.
                """
        )

        @Option(name: .long, help: "The connector's configuration file (its kerberos section: keytab, principal).")
        var config: String?

        @Option(name: .long, help: "Directory of app files, to read the app's sso settings.")
        var apps: String?

        @Option(name: .long, help: "The app whose sso settings to use (with --apps).")
        var app: String?

        @Option(name: .long, help: "The SPN to delegate to, instead of --apps/--app.")
        var spn: String?

        @Option(name: .long, help: "The user: alice@CORP.EXAMPLE.COM, a UPN, or an account name in the default realm.")
        var user: String

        @Option(name: .long, help: "spnego or kerberos (default: the app's tokenFormat, else spnego).")
        var tokenFormat: String?

        @Option(name: .long, help: "The keytab (default: the connector's kerberos.keytab, else /etc/krb5.keytab).")
        var keytab: String?

        @Option(name: .long, help: "The connector's principal (default: kerberos.principal, else the keytab's first).")
        var principal: String?

        @Option(name: .long, help: "Also send the token to this backend URL (e.g. the app's internalURL) and check its answer.")
        var url: String?

        func run() async throws {
            // As in the connector: never the default credential cache (the operator's own tickets).
            setenv("KRB5CCNAME", "MEMORY:sallyport-no-default-credential", 1)
            KerberosDefaults.requestForwardableTickets()
            var settings = KerberosSettings()
            if let file = self.config {
                do { settings = try ConfigLoader.loadConnector(file: file).kerberos } catch {
                    print("FAIL config: \(error)")
                    throw ExitCode(1)
                }
            }
            if let keytab { settings.keytab = keytab }
            if let principal { settings.principal = principal }

            var spn = self.spn
            var mechanism = GSSMechanism.spnego
            if let apps, let app {
                let load = ConfigLoader.loadApps(directory: apps)
                guard let found = load.apps.first(where: { $0.name == app }) else {
                    let problems = load.errors.filter { $0.message.contains(app) || $0.file.contains(app) }
                    print("FAIL app: no valid app \"\(app)\" in \(apps)\(problems.isEmpty ? "" : "; " + problems.map(\.description).joined(separator: "; "))")
                    throw ExitCode(1)
                }
                guard found.sso.handler == "kcd" else {
                    print("FAIL app: \(app) uses sso.handler \(found.sso.handler), not kcd")
                    throw ExitCode(1)
                }
                do {
                    let kcd = try KCDSettings(settings: HandlerCatalog.settings(of: found.forConnector))
                    spn = spn ?? kcd.spn
                    mechanism = kcd.mechanism
                } catch let error as SettingsError {
                    print("FAIL app: \(found.sourceFile): sso.\(error.key): \(error.message)")
                    throw ExitCode(1)
                }
                print("ok   app      \(app): spn \(spn ?? "?"), tokenFormat \(mechanism == .spnego ? "spnego" : "kerberos")")
            } else if (apps == nil) != (app == nil) {
                throw ValidationError("--apps and --app go together")
            }
            switch tokenFormat {
            case nil: break
            case "spnego": mechanism = .spnego
            case "kerberos": mechanism = .kerberos
            default: throw ValidationError("--token-format must be spnego or kerberos")
            }
            guard let spn else { throw ValidationError("name the target with --spn SPN, or with --apps DIR --app NAME") }
            var steps = DelegationCheck(settings: settings, spn: spn, user: user, mechanism: mechanism).run()
            if steps.passed, let url, let token = steps.token {
                await steps.checkBackend(url: url, token: token)
            }
            for line in steps.lines { print(line) }
            if !steps.passed { throw ExitCode(1) }
        }
    }
}

/// The delegation exchange one step at a time, for `sallyport check kcd`.
struct DelegationCheck {
    var settings: KerberosSettings
    var spn: String
    var user: String
    var mechanism: GSSMechanism

    struct Outcome {
        var lines: [String] = []
        var passed = true
        /// The last step's token, with what verifies the backend's reply to it.
        var token: (value: [UInt8], initiator: GSSInitiator, credential: GSSCredential, target: GSSName)?

        /// Sends the token to `url` and checks the answer: not a 401, and a reply token that verifies.
        mutating func checkBackend(url: String, token: (value: [UInt8], initiator: GSSInitiator, credential: GSSCredential, target: GSSName)) async {
            guard let target = URL(string: url) else {
                self.fail("backend", "\(url) is not a URL", fix: "give the backend's URL, e.g. http://payroll.corp.example.com/")
                return
            }
            var request = URLRequest(url: target)
            request.setValue("Negotiate " + Data(token.value).base64EncodedString(), forHTTPHeaderField: "Authorization")
            request.timeoutInterval = 30
            do {
                let (_, response) = try await URLSession.shared.data(for: request)
                guard let http = response as? HTTPURLResponse else { return self.fail("backend", "no HTTP answer from \(url)", fix: "check the URL") }
                let challenge = (http.value(forHTTPHeaderField: "WWW-Authenticate") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                    .first { $0.lowercased().hasPrefix("negotiate") }
                if http.statusCode == 401 {
                    return self.fail(
                        "backend", "\(url) answered 401 to the ticket",
                        fix: "the backend does not accept tickets for this SPN: check its keytab (key version, encryption types), that it expects this SPN, and its clock"
                    )
                }
                var text = "\(url) answered \(http.statusCode)"
                if let challenge, let reply = challenge.split(separator: " ").dropFirst().first.flatMap({ Data(base64Encoded: String($0)) }) {
                    do {
                        _ = try token.initiator.verifyReply(Array(reply), credential: token.credential, target: token.target)
                        text += "; its mutual-authentication reply verifies"
                    } catch {
                        return self.fail("backend", "\(url) answered \(http.statusCode) with a reply that does not verify: \(error)", fix: "is something else answering for the app?")
                    }
                }
                self.lines.append("ok   backend   \(text)")
            } catch {
                self.fail("backend", "\(url): \(error.localizedDescription)", fix: "check that this host reaches the backend")
            }
        }

        mutating func fail(_ step: String, _ detail: String, fix: String) {
            self.passed = false
            self.lines.append("FAIL \(step.padding(toLength: 9, withPad: " ", startingAt: 0)) \(detail)")
            self.lines.append("     fix: \(fix)")
        }
    }

    func run() -> Outcome {
        var outcome = Outcome()
        func ok(_ step: DelegationStep, _ text: String) { outcome.lines.append("ok   \(step.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) \(text)") }
        // A finding that fails no step by itself (resource-based delegation may not need it), with its fix.
        func warn(_ step: DelegationStep, _ text: String, fix: String) {
            outcome.lines.append("warn \(step.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) \(text)")
            outcome.lines.append("     fix: \(fix)")
        }
        func fail(_ error: DelegationError) -> Outcome {
            outcome.passed = false
            outcome.lines.append("FAIL \(error.step.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) \(error.detail)")
            outcome.lines.append("     category: \(error.failure.rawValue) (users get \(error.failure.status))")
            let fix = error.likelyFix
            outcome.lines.append(outcome.lines.contains("     fix: \(fix)") ? "     fix: as above" : "     fix: \(fix)")
            return outcome
        }
        // The connector's own delegator and its own steps: the same keytab check, TGT, S4U2Self and S4U2Proxy as
        // in service, reported one by one.
        let delegator = ConnectorService.delegator(for: settings)
        let delegated: DelegatedUser = user.contains("@") ? .upn(user) : .account(user)
        guard DelegatedUser.isAcceptable(user, allowsAt: true) else {
            if let error = Self.keytabProblem(settings.keytab) { return fail(error) }
            ok(.keytab, "\(settings.keytab) is readable")
            return fail(DelegationError(step: .s4u2self, failure: .unknownUser, detail: "\"\(user)\" cannot name a Kerberos user"))
        }
        do {
            let impersonated = try delegator.delegate(delegated, to: spn, mechanism: mechanism) { step, credential in
                switch step {
                case .tgt:
                    ok(.keytab, "\(settings.keytab) is readable")
                    let text = "\((try? credential.name()) ?? "?"), valid for \(Self.format(seconds: (try? credential.remainingLifetime()) ?? 0))"
                    switch (try? credential.tickets())?.first(where: \.isTGT)?.isForwardable {
                    case true?: ok(.tgt, text + ", forwardable")
                    case false?:
                        warn(
                            .tgt, text + ", NOT forwardable",
                            fix: "the KDC refused a forwardable TGT, so no S4U2Self ticket will be forwardable (classic constrained delegation fails; resource-based may work): MIT: the connector's principal has -allow_forwardable (kadmin: modprinc +allow_forwardable); AD: check the account's delegation settings"
                        )
                    case nil: ok(.tgt, text + ", flags unreadable")
                    }
                case .s4u2self:
                    let text = "ticket for \((try? credential.name()) ?? "?") to the connector"
                    switch KerberosDelegator.evidence(in: credential)?.isForwardable {
                    case true?: ok(.s4u2self, text + ", forwardable")
                    case false?: warn(.s4u2self, text + ", NOT forwardable: classic constrained delegation (S4U2Proxy) will be refused", fix: DelegationError.notForwardableFix)
                    case nil: ok(.s4u2self, text + ", flags unreadable")
                    }
                case .s4u2proxy:
                    ok(.s4u2proxy, "ticket for the user to \(spn), valid for \(Self.format(seconds: (try? credential.remainingLifetime()) ?? 0))")
                case .keytab, .token:
                    break
                }
            }
            let target = try DelegationError.during(.token) { try GSSName(principal: spn) }
            let initiator = GSSInitiator()
            let token = try DelegationError.during(.token) { try initiator.firstToken(credential: impersonated, target: target) }
            outcome.token = (token, initiator, impersonated, target)
            ok(.token, "\(token.count)-byte \(mechanism == .spnego ? "SPNEGO" : "raw Kerberos") token, made without the KDC (the header would be Authorization: Negotiate …)")
        } catch {
            // A failure after the keytab was read still says that it was.
            if error.step != .keytab, !outcome.lines.contains(where: { $0.hasPrefix("ok   keytab") }) { ok(.keytab, "\(settings.keytab) is readable") }
            return fail(error)
        }
        return outcome
    }

    /// Why the keytab cannot be read, if it cannot.
    static func keytabProblem(_ keytab: String) -> DelegationError? {
        guard access(keytab, R_OK) != 0 else { return nil }
        return DelegationError(step: .keytab, failure: .connectorCredential, detail: "cannot read keytab \(keytab): \(String(cString: strerror(errno)))")
    }

    static func format(seconds: UInt32) -> String {
        let hours = seconds / 3600, minutes = seconds / 60 % 60
        return hours > 0 ? "\(hours)h\(minutes)m" : "\(minutes)m\(seconds % 60)s"
    }
}
