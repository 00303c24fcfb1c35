import Foundation
import SallyportConfig
import Testing

@Suite("Parsing one app file")
struct AppFileTests {
    @Test func minimalAppGetsDefaults() throws {
        let app = try ConfigLoader.parseApp(yaml: minimalApp, file: "apps/wiki.yaml")
        #expect(app.name == "wiki")
        #expect(app.connectorGroup == "default")
        #expect(app.preAuthentication == .passthrough)
        #expect(app.sso == SSOConfig(handler: "passthrough", settings: [:], settingPositions: [:]))
        #expect(app.timeouts == AppTimeouts(connect: .seconds(10), response: .seconds(60), idle: .seconds(300)))
        #expect(app.backendTLS == nil)
        #expect(app.preserveHost == false)
        #expect(app.sourceFile == "apps/wiki.yaml")
    }

    @Test func parsedAppEqualsOneBuiltInCode() throws {
        let parsed = try ConfigLoader.parseApp(yaml: minimalApp, file: "apps/wiki.yaml")
        let built = AppConfig(
            name: "wiki",
            externalURL: try ExternalURL(parsing: "https://wiki.apps.example.com/"),
            internalURL: try InternalURL(parsing: "http://wiki.corp.internal:8080/"),
            sourceFile: "apps/wiki.yaml"
        )
        #expect(parsed == built)
        #expect(parsed.hashValue == built.hashValue)
    }

    @Test func unknownKeySuggestsTheClosestKey() throws {
        let error = try #require(appError(minimalApp + "timeout:\n  connect: 5s\n", file: "config/apps/wiki.yaml"))
        #expect(
            error
                == ConfigError(file: "config/apps/wiki.yaml", line: 6, column: 1, key: "timeout", message: #"unknown key (did you mean "timeouts"?)"#)
        )
        #expect(error.description == #"config/apps/wiki.yaml:6:1: timeout: unknown key (did you mean "timeouts"?)"#)
    }

    @Test func unknownKeyIgnoresCase() throws {
        let yaml = minimalApp.replacingOccurrences(of: "externalURL", with: "externalUrl")
        let error = try #require(appError(yaml))
        // The misspelt key is unknown, and the real one is missing: the first error in file order is the missing key at the mapping's start.
        #expect(error.key == "externalURL")
        #expect(error.line == 1)
        #expect(error.message == "required key is missing")

        let all = ConfigLoaderTestHooks.allAppErrors(yaml)
        #expect(
            all.contains(
                ConfigError(file: "apps/wiki.yaml", line: 2, column: 1, key: "externalUrl", message: #"unknown key (did you mean "externalURL"?)"#)))
    }

    @Test func unknownKeyWithoutSuggestionListsAllowedKeys() throws {
        let error = try #require(appError(minimalApp + "colour: blue\n"))
        #expect(error.line == 6)
        #expect(error.key == "colour")
        #expect(
            error.message
                == "unknown key; allowed keys here: name, externalURL, internalURL, connectorGroup, preAuthentication, sso, timeouts, "
                + "backendTLS, preserveHost, allowEscapedPath, allowWebSocket, accessLog"
        )
    }

    @Test func unknownNestedKeyNamesTheDottedPathAndItsOwnLine() throws {
        let error = try #require(appError(minimalApp + "timeouts:\n  connect: 5s\n  respose: 10s\n"))
        #expect(
            error
                == ConfigError(
                    file: "apps/wiki.yaml", line: 8, column: 3, key: "timeouts.respose", message: #"unknown key (did you mean "response"?)"#))
    }

    @Test func badDurationNamesKeyLineAndValue() throws {
        let error = try #require(appError(minimalApp + "timeouts:\n  connect: soon\n", file: "config/apps/payroll.yaml"))
        #expect(
            error.description == #"config/apps/payroll.yaml:7:3: timeouts.connect: must be a duration like "30s", "2m" or "500ms" (got "soon")"#
        )
    }

    @Test func wrongTypeSaysWhatIsExpected() throws {
        let list = try #require(appError(minimalApp.replacingOccurrences(of: "name: wiki", with: "name: [wiki]")))
        #expect(list == ConfigError(file: "apps/wiki.yaml", line: 1, column: 1, key: "name", message: "must be a string (got a list)"))

        let number = try #require(appError(minimalApp.replacingOccurrences(of: "connectorGroup: default", with: "connectorGroup: 42")))
        #expect(number.line == 4)
        #expect(number.key == "connectorGroup")
        #expect(number.message == #"must be a string (got the number 42; put it in quotes if you mean the text "42")"#)

        let mapping = try #require(appError(minimalApp + "timeouts: 5s\n"))
        #expect(
            mapping
                == ConfigError(
                    file: "apps/wiki.yaml", line: 6, column: 1, key: "timeouts", message: #"must be a mapping of keys to values (got "5s")"#))

        let bool = try #require(appError(minimalApp + "preserveHost: sometimes\n"))
        #expect(
            bool == ConfigError(file: "apps/wiki.yaml", line: 6, column: 1, key: "preserveHost", message: #"must be true or false (got "sometimes")"#)
        )
    }

    @Test func missingKeyIsReportedAtTheMapping() throws {
        let yaml = "# The wiki.\n" + minimalApp.replacingOccurrences(of: "connectorGroup: default\n", with: "")
        let error = try #require(appError(yaml))
        #expect(error == ConfigError(file: "apps/wiki.yaml", line: 2, column: 1, key: "connectorGroup", message: "required key is missing"))
        #expect(error.description == "apps/wiki.yaml:2:1: connectorGroup: required key is missing")
    }

    @Test func missingNestedKeyIsReportedAtItsParentKey() throws {
        let error = try #require(appError(minimalApp + "sso:\n  realm: CORP.EXAMPLE.COM\n"))
        #expect(error == ConfigError(file: "apps/wiki.yaml", line: 6, column: 1, key: "sso.handler", message: "required key is missing"))
    }

    @Test func emptyValueIsAnError() throws {
        let error = try #require(appError(minimalApp.replacingOccurrences(of: "connectorGroup: default", with: "connectorGroup:")))
        #expect(error.line == 4)
        #expect(error.key == "connectorGroup")
        #expect(error.message.hasPrefix("has no value"))
    }

    @Test func invalidYAMLKeepsItsPosition() throws {
        let error = try #require(appError("name: wiki\nexternalURL: [https://a.example.com/\ninternalURL: x\n"))
        #expect(error.key == nil)
        #expect(error.line == 3)
        #expect(error.column == 12)
        #expect(error.message == "invalid YAML: did not find expected ',' or ']' (while parsing a flow sequence at line 2, column 14)")

        let tab = try #require(appError("name: wiki\nsso:\n\thandler: passthrough\n"))
        #expect(tab.line == 3)
        #expect(tab.column == 1)
        #expect(tab.message.hasPrefix("invalid YAML: "))
        #expect(tab.message.hasSuffix("; YAML does not allow tabs for indentation, use spaces"))
    }

    @Test func duplicateKeyPointsAtTheSecondOccurrence() throws {
        let error = try #require(appError(minimalApp + "name: other\n"))
        #expect(error.line == 6)
        #expect(error.column == 1)
        #expect(error.key == "name")
        #expect(error.message == "duplicate key: it already appears at line 1; each key may appear only once in a mapping")
    }

    @Test func nestedDuplicateKeyNamesItsPath() throws {
        let error = try #require(appError(minimalApp + "timeouts:  # backend\n  connect: 5s\n\n  connect: 6s\n"))
        #expect(
            error
                == ConfigError(
                    file: "apps/wiki.yaml",
                    line: 9,
                    column: 3,
                    key: "timeouts.connect",
                    message: "duplicate key: it already appears at line 7; each key may appear only once in a mapping"
                )
        )
    }

    @Test func emptyFileSaysSo() throws {
        for yaml in ["", "\n\n", "# nothing here yet\n"] {
            let error = try #require(appError(yaml))
            #expect(error.line == nil)
            #expect(error.key == nil)
            #expect(error.message.hasPrefix("the file is empty; "))
            #expect(error.message.contains("name, externalURL, internalURL"))
        }
    }

    @Test func topLevelMustBeAMapping() throws {
        let list = try #require(appError("# apps\n- name: wiki\n- name: payroll\n"))
        #expect(list.line == 2)
        #expect(list.column == 1)
        #expect(list.message == "the top level must be a mapping of keys to values, like `key: value` lines (got a list)")

        let scalar = try #require(appError("wiki\n"))
        #expect(scalar.line == 1)
        #expect(scalar.message.hasSuffix(#"(got "wiki")"#))
    }

    @Test func preAuthenticationMustBeNamedAndKnown() throws {
        let unknown = try #require(appError(minimalApp.replacingOccurrences(of: "preAuthentication: passthrough", with: "preAuthentication: saml")))
        #expect(
            unknown
                == ConfigError(
                    file: "apps/wiki.yaml", line: 5, column: 1, key: "preAuthentication", message: #"must be one of: passthrough, oidc, jwt (got "saml")"#))

        let missing = try #require(appError(minimalApp.replacingOccurrences(of: "preAuthentication: passthrough\n", with: "")))
        #expect(missing.key == "preAuthentication")
        #expect(missing.message == "required key is missing")
    }

    @Test func preAuthenticationForms() throws {
        let short = try ConfigLoader.parseApp(
            yaml: minimalApp.replacingOccurrences(of: "preAuthentication: passthrough", with: "preAuthentication: oidc"), file: "apps/wiki.yaml"
        )
        #expect(short.preAuthentication == .authenticated(AccessPolicy(method: .oidc)))

        let long = try ConfigLoader.parseApp(
            yaml: minimalApp.replacingOccurrences(
                of: "preAuthentication: passthrough",
                with: "preAuthentication:\n  method: jwt\n  provider: partners\n  allowedUsers: [alice@corp.example.test]\n  allowedGroups: [payroll]"
            ),
            file: "apps/wiki.yaml"
        )
        let policy = AccessPolicy(method: .jwt, provider: "partners", allowedUsers: ["alice@corp.example.test"], allowedGroups: ["payroll"])
        #expect(long.preAuthentication == .authenticated(policy))

        let rulesOnPassthrough = try #require(
            appError(minimalApp.replacingOccurrences(of: "preAuthentication: passthrough", with: "preAuthentication:\n  method: passthrough\n  allowedUsers: [bob]"))
        )
        #expect(rulesOnPassthrough.key == "preAuthentication.allowedUsers")
        #expect(rulesOnPassthrough.line == 7)

        let typo = try #require(
            appError(minimalApp.replacingOccurrences(of: "preAuthentication: passthrough", with: "preAuthentication:\n  method: oidc\n  allowedGroup: [x]"))
        )
        #expect(typo.key == "preAuthentication.allowedGroup")
        #expect(typo.message == #"unknown key (did you mean "allowedGroups"?)"#)
    }

    @Test func accessRulesMatchUsersWithoutCaseAndGroupsExactly() {
        let policy = AccessPolicy(method: .oidc, allowedUsers: ["Alice@Corp.Example.Test"], allowedGroups: ["payroll"])
        #expect(policy.allows(userPrincipalName: "alice@corp.example.test", groups: []))
        #expect(policy.allows(userPrincipalName: "bob@corp.example.test", groups: ["staff", "payroll"]))
        #expect(!policy.allows(userPrincipalName: "bob@corp.example.test", groups: ["Payroll"]))
        #expect(AccessPolicy(method: .jwt).allows(userPrincipalName: "anyone", groups: []))
    }

    @Test func preAuthenticationCrossesTheTunnelInAStableForm() throws {
        let policy = PreAuthentication.authenticated(AccessPolicy(method: .oidc, provider: "corp", allowedGroups: ["g"]))
        let json = String(decoding: try JSONEncoder.sorted.encode(policy), as: UTF8.self)
        #expect(json == #"{"allowedGroups":["g"],"allowedUsers":[],"method":"oidc","provider":"corp"}"#)
        #expect(try JSONDecoder().decode(PreAuthentication.self, from: Data(json.utf8)) == policy)
        let passthrough = String(decoding: try JSONEncoder.sorted.encode(PreAuthentication.passthrough), as: UTF8.self)
        #expect(passthrough == #"{"method":"passthrough"}"#)
    }

    @Test func providersAreResolvedAgainstTheRelay() throws {
        func app(_ preAuthentication: String, file: String = "apps/wiki.yaml") throws -> AppConfig {
            try ConfigLoader.parseApp(yaml: minimalApp.replacingOccurrences(of: "preAuthentication: passthrough", with: preAuthentication), file: file)
        }
        let providers: [String: AuthenticationMethod] = ["corp": .oidc, "partners": .jwt, "gateway": .jwt]
        let implicit = ConfigLoader.resolveProviders([try app("preAuthentication: oidc")], providers: providers)
        #expect(implicit.errors.isEmpty)
        #expect(implicit.apps.first?.preAuthentication.policy?.provider == "corp")

        let ambiguous = ConfigLoader.resolveProviders([try app("preAuthentication: jwt")], providers: providers)
        #expect(ambiguous.apps.isEmpty)
        #expect(ambiguous.errors.first?.key == "preAuthentication")
        #expect(ambiguous.errors.first?.line == 5)
        #expect(ambiguous.errors.first?.message.contains("gateway, partners") == true)

        let missing = ConfigLoader.resolveProviders([try app("preAuthentication:\n  method: oidc\n  provider: okta")], providers: providers)
        #expect(missing.apps.isEmpty)
        #expect(missing.errors.first == ConfigError(
            file: "apps/wiki.yaml", line: 7, column: 3, key: "preAuthentication.provider",
            message: #"no identity provider "okta" in the relay config (defined: corp, gateway, partners)"#
        ))

        let wrongKind = ConfigLoader.resolveProviders([try app("preAuthentication:\n  method: oidc\n  provider: partners")], providers: providers)
        #expect(wrongKind.errors.first?.message == #"provider "partners" is jwt, but method is oidc"#)

        let none = ConfigLoader.resolveProviders([try app("preAuthentication: oidc")], providers: [:])
        #expect(none.errors.first?.message.contains("no oidc identity provider") == true)
    }

    @Test(arguments: ["Wiki", "-wiki", "wiki_app", "", String(repeating: "a", count: 64)])
    func invalidNamesAreRejected(name: String) throws {
        let error = try #require(appError(minimalApp.replacingOccurrences(of: "name: wiki", with: "name: \"\(name)\"")))
        #expect(error.line == 1)
        #expect(error.key == "name")
    }

    @Test func nameRuleIsExplained() throws {
        let error = try #require(appError(minimalApp.replacingOccurrences(of: "name: wiki", with: "name: Wiki")))
        #expect(error.message == #"must be 1 to 63 lowercase letters, digits or "-", starting with a letter or digit (got "Wiki")"#)
    }

    @Test func ssoSettingsAreKeptWithTheirLines() throws {
        let yaml =
            minimalApp + """
                sso:
                  handler: kerberos
                  realm: CORP.EXAMPLE.COM
                  spns:
                    - HTTP/wiki.corp.internal
                  ticketLifetime: 600
                  delegate: true
                  ratio: 0.5
                  extra: ~
                  options: {a: b}

                """
        let app = try ConfigLoader.parseApp(yaml: yaml, file: "apps/wiki.yaml")
        #expect(app.sso.handler == "kerberos")
        #expect(
            app.sso.settings == [
                "realm": .string("CORP.EXAMPLE.COM"),
                "spns": .list([.string("HTTP/wiki.corp.internal")]),
                "ticketLifetime": .int(600),
                "delegate": .bool(true),
                "ratio": .double(0.5),
                "extra": .null,
                "options": .map(["a": .string("b")]),
            ]
        )
        let topLevel = app.sso.settingPositions.filter { !$0.key.contains(".") && !$0.key.contains("[") }.mapValues(\.line)
        #expect(topLevel == ["realm": 8, "spns": 9, "ticketLifetime": 11, "delegate": 12, "ratio": 13, "extra": 14, "options": 15])
        // Nested keys and list items too, with columns: handler errors point at them, and mappings keep the file's order.
        #expect(app.sso.settingPositions["spns[0]"] == .init(line: 10, column: 7))
        #expect(app.sso.settingPositions["options.a"] == .init(line: 15, column: 13))
    }

    @Test func ssoHandlerMustBeANonEmptyString() throws {
        let empty = try #require(appError(minimalApp + "sso:\n  handler: \"\"\n"))
        #expect(empty == ConfigError(file: "apps/wiki.yaml", line: 7, column: 3, key: "sso.handler", message: "must not be empty"))

        let notMapping = try #require(appError(minimalApp + "sso: passthrough\n"))
        #expect(notMapping.key == "sso")
        #expect(notMapping.message == #"must be a mapping of keys to values (got "passthrough")"#)
    }

    @Test func timeoutsAcceptEveryDurationForm() throws {
        let app = try ConfigLoader.parseApp(yaml: minimalApp + "timeouts:\n  connect: 500ms\n  response: 45\n  idle: 1h\n", file: "a.yaml")
        #expect(app.timeouts == AppTimeouts(connect: .milliseconds(500), response: .seconds(45), idle: .seconds(3600)))
    }

    @Test func backendTLSNeedsAnHTTPSInternalURL() throws {
        let error = try #require(appError(minimalApp + "backendTLS:\n  serverName: wiki.corp.internal\n"))
        #expect(error.line == 6)
        #expect(error.column == 1)
        #expect(error.key == "backendTLS")
        #expect(error.message == "only applies to an https:// internalURL (this app's is http://wiki.corp.internal:8080/); remove it or use https://")
    }

    @Test func backendTLSWithHTTPSInternalURL() throws {
        let yaml =
            minimalApp.replacingOccurrences(of: "http://wiki.corp.internal:8080/", with: "https://wiki.corp.internal/") + """
                backendTLS:
                  caPEM: |
                    -----BEGIN CERTIFICATE-----
                    MIIB
                    -----END CERTIFICATE-----
                  serverName: Wiki.Corp.Internal

                """
        let app = try ConfigLoader.parseApp(yaml: yaml, file: "a.yaml")
        let tls = try #require(app.backendTLS)
        #expect(tls.caFile == nil)
        #expect(tls.caPEM == "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
        #expect(tls.serverName == "wiki.corp.internal")
    }

    @Test func backendTLSRejectsAmbiguousOrRelativeTrust() throws {
        let https = minimalApp.replacingOccurrences(of: "http://wiki.corp.internal:8080/", with: "https://wiki.corp.internal/")
        let both = try #require(
            appError(https + "backendTLS:\n  caFile: /etc/ca.pem\n  caPEM: \"-----BEGIN CERTIFICATE-----\"\n")
        )
        #expect(
            both == ConfigError(file: "apps/wiki.yaml", line: 8, column: 3, key: "backendTLS.caPEM", message: "set either caFile or caPEM, not both"))

        let relative = try #require(appError(https + "backendTLS:\n  caFile: ca.pem\n"))
        #expect(relative.line == 7)
        #expect(relative.key == "backendTLS.caFile")
        #expect(relative.message == #"must be an absolute path on the connector host (got "ca.pem")"#)

        let notPEM = try #require(appError(https + "backendTLS:\n  caPEM: hello\n"))
        #expect(notPEM.key == "backendTLS.caPEM")
    }

    @Test func firstErrorInFileOrderIsThrown() throws {
        let yaml = minimalApp.replacingOccurrences(of: "name: wiki", with: "name: Wiki") + "timeouts:\n  connect: soon\n"
        let error = try #require(appError(yaml))
        #expect(error.line == 1)
        #expect(error.key == "name")
    }
}

/// Collects every error of one app file through the directory loader.
enum ConfigLoaderTestHooks {
    static func allAppErrors(_ yaml: String) -> [ConfigError] {
        guard let directory = try? TemporaryDirectory() else { return [] }
        defer { directory.remove() }
        guard (try? directory.write("wiki.yaml", yaml)) != nil else { return [] }
        return ConfigLoader.loadApps(directory: directory.path).errors.map { error in
            var error = error
            error.file = "apps/wiki.yaml"
            return error
        }
    }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return encoder
    }

    @Test("accessLog is true, false or withQuery; anything else says so")
    func accessLogValues() throws {
        let error = try #require(appError(minimalApp + "accessLog: sometimes\n"))
        #expect(error.key == "accessLog" && error.message.contains("must be true, false or withQuery"), "\(error)")
    }
}
