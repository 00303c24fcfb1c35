import Foundation
import SallyportConfig
import SallyportKCD
import SallyportKerberos
import SallyportPluginAPI
import Testing

@testable import SallyportSSO

private let oidcApp = """
    name: wiki
    externalURL: https://wiki.apps.example.com/
    internalURL: http://wiki.corp.internal:8080/
    connectorGroup: default
    preAuthentication: oidc

    """

/// The error the built-in catalog reports for this app file, or nil when it is accepted.
private func ssoError(_ yaml: String) throws -> ConfigError? {
    let app = try ConfigLoader.parseApp(yaml: yaml, file: "apps/wiki.yaml")
    return HandlerCatalog.builtIn.check([app]).errors.first
}

@Suite("Header handler settings")
struct HeaderSettingsTests {
    @Test func goodSettingsAreRead() throws {
        let handler = try HeaderHandler(settings: [
            "headers": .map(["X-Remote-User": .string("{upn}"), "X-Remote-Groups": .string("{groups}")]), "groupSeparator": .string(";"),
        ])
        #expect(handler.separator == ";")
        #expect(handler.headers.map(\.name) == ["X-Remote-User", "X-Remote-Groups"], "in the file's order")
        #expect(handler.headers.last?.parts == [.attribute("groups")])
    }

    @Test func mistakesAreConfigErrorsAtTheirLine() throws {
        let hopByHop = try #require(try ssoError(oidcApp + "sso:\n  handler: header\n  headers:\n    Connection: \"{upn}\"\n"))
        #expect(hopByHop.key == "sso.headers.Connection")
        #expect(hopByHop.line == 9 && hopByHop.column == 5, "at the nested key itself")
        #expect(hopByHop.file == "apps/wiki.yaml")

        let reserved = try #require(try ssoError(oidcApp + "sso:\n  handler: header\n  headers:\n    Sallyport_Identity: \"{upn}\"\n"))
        #expect(reserved.key == "sso.headers.Sallyport_Identity")

        let twice = try #require(try ssoError(oidcApp + "sso:\n  handler: header\n  headers:\n    X-Remote-User: \"{upn}\"\n    x_remote_user: \"{sub}\"\n"))
        #expect(twice.message.contains("is the same header as"))

        let unclosed = try #require(try ssoError(oidcApp + "sso:\n  handler: header\n  headers:\n    X-User: \"{upn\"\n"))
        #expect(unclosed.message == #"has a "{" without a closing "}""#)

        let unknown = try #require(try ssoError(oidcApp + "sso:\n  handler: header\n  headers:\n    X-User: \"{upn}\"\n  separator: \";\"\n"))
        #expect(unknown.key == "sso.separator")
        #expect(unknown.line == 10)

        let passthrough = try #require(
            try ssoError(oidcApp.replacingOccurrences(of: "preAuthentication: oidc", with: "preAuthentication: passthrough") + "sso:\n  handler: header\n  headers:\n    X-User: \"{upn}\"\n")
        )
        #expect(passthrough.key == "sso")
        #expect(passthrough.line == 6)
        #expect(passthrough.message.contains("needs the user's identity"))

        #expect(try ssoError(oidcApp + "sso:\n  handler: passthrough\n  extra: 1\n")?.key == "sso.extra")
    }

    @Test func templatesNameOnlyStandardAttributesOrKeptClaims() throws {
        var app = try ConfigLoader.parseApp(
            yaml: oidcApp + "sso:\n  handler: header\n  headers:\n    X-User: \"{upn}\"\n    X-Dept: \"{departmnt}\"\n", file: "apps/wiki.yaml"
        )
        app.preAuthentication = .authenticated(AccessPolicy(method: .oidc, provider: "corp"))
        let typo = try #require(HandlerCatalog.builtIn.check([app], keptClaims: ["corp": ["department"]]).errors.first)
        #expect(typo.key == "sso.headers.X-Dept")
        #expect(typo.line == 10)
        #expect(typo.message.contains("names {departmnt}"))
        #expect(typo.message.contains("it keeps department"))
        #expect(HandlerCatalog.builtIn.check([app], keptClaims: ["corp": ["departmnt"]]).errors.isEmpty)
        #expect(HandlerCatalog.builtIn.check([app]).errors.isEmpty, "without provider information only the syntax is checked")
    }

    @Test func unknownHandlersAreLeftToTheConnectorsOnTheRelayButNotOnAConnector() async throws {
        let app = try ConfigLoader.parseApp(yaml: oidcApp + "sso:\n  handler: kerberos-plus\n", file: "apps/wiki.yaml")
        #expect(HandlerCatalog.builtIn.check([app]).errors.isEmpty)
        guard case .failed(let errors)? = await HandlerCatalog.builtIn.make(for: app.forConnector, context: HandlerCatalog.validationContext), let error = errors.first else {
            Issue.record("an unknown handler must fail on a connector")
            return
        }
        #expect(error.key == "sso.handler")
        #expect(error.line == 7)
        #expect(error.message.contains("is its plugin installed"))
    }
}

@Suite("Header handler at work")
struct HeaderHandlerTests {
    let alice = Identity(
        userPrincipalName: "alice@corp.example", subject: "s-1", issuer: "https://i", provider: "corp",
        displayName: "Alice\nInjected: yes", groups: ["staff", "payroll"], claims: ["department": ["finance"]]
    )

    @Test func setHeadersReplaceEveryClientSpelling() async throws {
        let handler = try HeaderHandler(settings: [
            "headers": .map(["X-Remote-User": .string("{upn}"), "X-Remote-Groups": .string("{groups}"), "X-Remote-Who": .string("{name} <{email}> {department}")]),
            "groupSeparator": .string(";"),
        ])
        var request = BackendRequest(method: "GET", path: "/")
        for (name, value) in [("X-Remote-User", "mallory"), ("x-remote-user", "m2"), ("X_Remote_User", "m3"), ("X-REMOTE-GROUPS", "admins"), ("X-Other", "kept")] {
            request.headers.append(name, value)
        }
        #expect(await handler.prepare(&request, identity: alice, attempt: 1) == .proceed)
        #expect(request.headers.values(named: "x-remote-user") == ["alice@corp.example"])
        #expect(!request.headers.contains { $0.name == "X_Remote_User" })
        #expect(request.headers["X-Remote-Groups"] == "staff;payroll")
        #expect(request.headers["X-Remote-Who"] == "Alice Injected: yes <> finance", "control characters become spaces")
        #expect(request.headers["X-Other"] == "kept")
    }

    @Test func noIdentityIsRefused() async throws {
        let handler = try HeaderHandler(settings: ["headers": .map(["X-User": .string("{upn}")])])
        var request = BackendRequest(method: "GET", path: "/")
        guard case .refuse(let refusal) = await handler.prepare(&request, identity: nil, attempt: 1) else {
            Issue.record("a request without identity must be refused")
            return
        }
        #expect(refusal.status == 502)
    }

    @Test func headerFieldsIgnoreCaseAndUnderscores() {
        var fields = HeaderFields()
        fields.append("Content-Type", "text/plain")
        fields.append("x_a", "1")
        fields.append("X-A", "2")
        #expect(fields["content-type"] == "text/plain")
        #expect(fields.values(named: "X-A") == ["2"])
        fields.set("x-a", "3")
        #expect(fields.count == 2)
        #expect(fields.values(named: "x-a") == ["3"])
    }
}

@Suite("KCD handler settings")
struct KCDSettingsTests {
    @Test func settingsAreReadWithDefaults() throws {
        let minimal = try KCDSettings(settings: ["spn": .string("HTTP/payroll.corp.example.com")])
        #expect(minimal.mechanism == .spnego && minimal.sendAuthorization == .always && minimal.loginIdentity == .upn)
        #expect(minimal.mutualAuthentication == .ifOffered)
        let full = try KCDSettings(settings: [
            "spn": .string("HTTP/payroll.corp.example.com@CORP.EXAMPLE.COM"), "tokenFormat": .string("kerberos"),
            "sendAuthorization": .string("on401"), "delegatedLoginIdentity": .string("claim:onprem_name"),
            "mutualAuthentication": .string("required"),
        ])
        #expect(full.mechanism == .kerberos && full.sendAuthorization == .on401 && full.loginIdentity == .claim("onprem_name"))
        #expect(full.mutualAuthentication == .required)
    }

    @Test func mistakesNameTheirSetting() {
        func key(_ settings: SettingsMap) -> String? {
            do {
                _ = try KCDSettings(settings: settings)
                return nil
            } catch let error as SettingsError {
                return error.key
            } catch {
                return "?"
            }
        }
        let spn = SettingValue.string("HTTP/app.corp.example.com")
        #expect(key([:]) == "spn")
        #expect(key(["spn": .string("payroll.corp.example.com")]) == "spn")
        #expect(key(["spn": .string("HTTP/a b")]) == "spn")
        #expect(key(["spn": .string("HTTP/a@B@C")]) == "spn")
        #expect(key(["spn": spn, "tokenFormat": .string("ntlm")]) == "tokenFormat")
        #expect(key(["spn": spn, "sendAuthorization": .string("sometimes")]) == "sendAuthorization")
        #expect(key(["spn": spn, "mutualAuthentication": .string("yes")]) == "mutualAuthentication")
        #expect(key(["spn": spn, "delegatedLoginIdentity": .string("claim:")]) == "delegatedLoginIdentity")
        #expect(key(["spn": spn, "realm": .string("X")]) == "realm")
    }

    @Test func usersComeFromTheIdentityAndOddNamesAreRefused() throws {
        func user(_ setting: String, upn: String, claims: [String: [String]] = [:]) throws -> Result<DelegatedUser, KCDRefusalReason> {
            let settings = try KCDSettings(settings: ["spn": .string("HTTP/app.corp.example.com"), "delegatedLoginIdentity": .string(setting)])
            return settings.user(for: Identity(userPrincipalName: upn, subject: "s", issuer: "i", provider: "p", groups: [], claims: claims))
        }
        #expect(try user("upn", upn: "alice@corp.example.com") == .success(.upn("alice@corp.example.com")))
        #expect(try user("upnUsername", upn: "alice@cloud.example") == .success(.account("alice")))
        #expect(try user("samAccountName", upn: "a@b", claims: ["onprem_sam_account_name": ["ALICE01"]]) == .success(.account("ALICE01")))
        #expect(try user("claim:mail", upn: "a@b", claims: ["mail": ["alice@corp.example.com"]]) == .success(.upn("alice@corp.example.com")))
        #expect(try user("samAccountName", upn: "a@b") == .failure(.missingClaim(KCDSettings.samAccountNameClaims.joined(separator: ", "))))
        for bad in ["krbtgt/CORP.EXAMPLE.COM@CORP.EXAMPLE.COM", "alice@x@y", "al ice@x", "alice\\x@y", "alice", "@corp"] {
            guard case .failure = try user("upn", upn: bad) else {
                Issue.record("\(bad) must not name a Kerberos user")
                continue
            }
        }
    }

    @Test func allowlistMatchesExactNamesAndDomains() throws {
        #expect(KCDSettings.matches("HTTP/app.corp.example.com", pattern: "HTTP/App.Corp.Example.com"))
        #expect(KCDSettings.matches("HTTP/app.corp.example.com", pattern: "HTTP/*.corp.example.com"))
        #expect(KCDSettings.matches("HTTP/a.b.corp.example.com", pattern: "HTTP/*.corp.example.com"))
        #expect(!KCDSettings.matches("HTTP/corp.example.com", pattern: "HTTP/*.corp.example.com"))
        #expect(!KCDSettings.matches("HTTP/evilcorp.example.com", pattern: "HTTP/*.corp.example.com"))
        #expect(!KCDSettings.matches("CIFS/app.corp.example.com", pattern: "HTTP/app.corp.example.com"))
        let factory = KCDHandlerFactory(allowedSPNs: ["HTTP/*.corp.example.com"])
        let settings: SettingsMap = ["spn": .string("HTTP/payroll.elsewhere.com")]
        let handlerContext = HandlerContext(appName: "x", settings: settings, logger: PluginLogger { _, _, _ in }, metrics: PluginMetrics { _, _, _ in }, blockingExecutor: { $0() })
        #expect(throws: SettingsError.self) { try factory.makeHandler(context: handlerContext) }
    }

    /// The relay and `config validate` check kcd settings without Kerberos (SallyportSSO does not link it).
    @Test func theSettingsOnlyFactoryChecksWithoutKerberos() async throws {
        func context(_ spn: String) -> HandlerContext {
            HandlerContext(appName: "x", settings: ["spn": .string(spn)], logger: PluginLogger { _, _, _ in }, metrics: PluginMetrics { _, _, _ in }, blockingExecutor: { $0() })
        }
        let factory = KCDSettingsFactory(allowedSPNs: ["HTTP/*.corp.example.com"])
        #expect(throws: SettingsError.self) { try factory.makeHandler(context: context("HTTP/payroll.elsewhere.com")) }
        #expect(throws: SettingsError.self) { try KCDSettingsFactory().makeHandler(context: context("not an spn")) }
        let handler = try factory.makeHandler(context: context("HTTP/payroll.corp.example.com"))
        var request = BackendRequest(method: "GET", path: "/")
        guard case .refuse(let refusal) = await handler.prepare(&request, identity: nil, attempt: 1) else {
            Issue.record("a process without Kerberos credentials refuses")
            return
        }
        #expect(refusal.status == 502)
        #expect(HandlerCatalog.builtIn.factories["kcd"] is KCDSettingsFactory)
    }

    @Test func withoutCredentialsTheHandlerRefusesAndDropsTheClientsAuthorization() async throws {
        let handler = try KCDHandlerFactory().makeHandler(context: HandlerContext(
            appName: "x", settings: ["spn": .string("HTTP/app.corp.example.com")], logger: PluginLogger { _, _, _ in }, metrics: PluginMetrics { _, _, _ in },
            blockingExecutor: { $0() }
        ))
        var request = BackendRequest(method: "GET", path: "/", headers: HeaderFields([.init(name: "Authorization", value: "Bearer secret")]))
        guard case .refuse(let refusal) = await handler.prepare(&request, identity: nil, attempt: 1) else {
            Issue.record("must refuse")
            return
        }
        #expect(refusal.status == 502)
        #expect(request.headers["Authorization"] == nil)
    }
}

@Suite("The relay's check")
struct RelayCheckTests {
    /// Records whether a handler was made.
    final class Recording: SSOHandlerFactory, @unchecked Sendable {
        let name: String
        let requiresIdentity = true
        var made = 0
        init(name: String) { self.name = name }
        func makeHandler(context: HandlerContext) throws -> any SSOHandler {
            made += 1
            return PassthroughHandler()
        }
    }

    /// The relay checks built-in settings on every reload without making a handler (before, it made each one,
    /// and the kcd handler imported a GSS name each time).
    @Test func builtInSettingsAreCheckedWithoutMakingHandlers() throws {
        let kcd = Recording(name: "kcd")
        let header = Recording(name: "header")
        let catalog = HandlerCatalog(factories: [kcd, header, PassthroughHandlerFactory()])
        let good = try ConfigLoader.parseApp(yaml: oidcApp + "sso:\n  handler: kcd\n  spn: HTTP/app.corp.example.com\n", file: "apps/wiki.yaml")
        let bad = try ConfigLoader.parseApp(yaml: oidcApp.replacingOccurrences(of: "wiki", with: "hr") + "sso:\n  handler: kcd\n  spn: not an spn\n", file: "apps/hr.yaml")
        let templates = try ConfigLoader.parseApp(
            yaml: oidcApp.replacingOccurrences(of: "wiki", with: "docs") + "sso:\n  handler: header\n  headers:\n    X-User: \"{upn}\"\n", file: "apps/docs.yaml"
        )
        let checked = catalog.check([good, bad, templates])
        #expect(checked.apps.map(\.name) == ["wiki", "docs"])
        #expect(checked.errors.first?.key == "sso.spn")
        #expect(kcd.made == 0 && header.made == 0)
    }
}
