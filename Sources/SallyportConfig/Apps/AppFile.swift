internal import Yams

/// Reads one app file.
enum AppFile {
    static let topLevelKeys = [
        "name", "externalURL", "internalURL", "connectorGroup", "preAuthentication", "sso", "timeouts", "backendTLS", "preserveHost",
        "allowEscapedPath", "allowWebSocket", "accessLog",
    ]

    /// The app, or every problem in the file in file order.
    static func parse(yaml: String, file: String) -> Result<AppConfig, FileProblems> {
        let diagnostics = Diagnostics(file: file)
        var reader: MappingReader
        do throws(ConfigError) {
            let root = try Document.root(yaml: yaml, file: file, kind: "an app file", expectedKeys: topLevelKeys)
            reader = try MappingReader(ValueNode(node: root, keyPath: "", diagnostics: diagnostics))
        } catch {
            return .failure(FileProblems(errors: [error]))
        }

        let name = reader.required("name") { value throws(ConfigError) in try value.name() }
        let externalURL = reader.required("externalURL") { value throws(ConfigError) in try value.externalURL() }
        let internalURL = reader.required("internalURL") { value throws(ConfigError) in try value.internalURL() }
        let connectorGroup = reader.required("connectorGroup") { value throws(ConfigError) in try value.name() }
        let preAuthentication = reader.required("preAuthentication", preAuthentication)
        let sso = reader.optional("sso", default: SSOConfig(), ssoConfig)
        let timeouts = reader.optional("timeouts", default: AppTimeouts(), appTimeouts)
        let backendTLS = reader.optional("backendTLS", backendTLS)
        let preserveHost = reader.optional("preserveHost", default: false) { value throws(ConfigError) in try value.bool() }
        let allowEscapedPath = reader.optional("allowEscapedPath", default: false) { value throws(ConfigError) in try value.bool() }
        let allowWebSocket = reader.optional("allowWebSocket", default: true) { value throws(ConfigError) in try value.bool() }
        let accessLog = reader.optional("accessLog", default: (true, false)) { value throws(ConfigError) -> (Bool, Bool) in
            if (try? value.string()) == "withQuery" { return (true, true) }
            do {
                return (try value.bool(), false)
            } catch {
                throw value.error("must be true, false or withQuery (lines with the query string too)")
            }
        }
        reader.finish()

        if reader.keyMark("backendTLS") != nil, let internalURL, internalURL.scheme != "https" {
            diagnostics.report(
                reader.errorAtKey(
                    "backendTLS",
                    "only applies to an https:// internalURL (this app's is \(internalURL.string)); remove it or use https://"
                )
            )
        }

        guard diagnostics.errors.isEmpty, let name, let externalURL, let internalURL, let connectorGroup, let preAuthentication else {
            return .failure(FileProblems(errors: diagnostics.sortedErrors))
        }
        var app = AppConfig(
            name: name,
            externalURL: externalURL,
            internalURL: internalURL,
            connectorGroup: connectorGroup,
            preAuthentication: preAuthentication,
            sso: sso,
            timeouts: timeouts,
            backendTLS: backendTLS,
            preserveHost: preserveHost,
            sourceFile: file
        )
        app.allowEscapedPath = allowEscapedPath
        app.allowWebSocket = allowWebSocket
        (app.accessLog, app.accessLogQuery) = accessLog
        for key in topLevelKeys {
            if let mark = reader.keyMark(key) { app.keyPositions.positions[key] = .init(line: mark.line, column: mark.column) }
        }
        if let section = reader.entry("sso")?.value, section.node.mapping != nil, let mark = (try? MappingReader(section))?.keyMark("handler") {
            app.keyPositions.positions["sso.handler"] = .init(line: mark.line, column: mark.column)
        }
        if let section = reader.entry("preAuthentication")?.value, section.node.mapping != nil,
            let mark = (try? MappingReader(section))?.keyMark("provider")
        {
            app.keyPositions.positions["preAuthentication.provider"] = .init(line: mark.line, column: mark.column)
        }
        return .success(app)
    }

    private static func preAuthentication(_ value: ValueNode) throws(ConfigError) -> PreAuthentication {
        let allowed = PreAuthentication.configNames.joined(separator: ", ")
        if value.node.scalar != nil {
            return try authenticationMethod(value, allowed: allowed).map { .authenticated(AccessPolicy(method: $0)) } ?? .passthrough
        }
        guard value.node.mapping != nil else {
            throw value.error("must be one of \(allowed), or a mapping with method, provider, allowedUsers and allowedGroups (got \(ValueNode.describe(value.node)))")
        }
        var reader = try value.mapping()
        let parsed = reader.required("method") { value throws(ConfigError) in try authenticationMethod(value, allowed: allowed) }
        let provider = reader.optional("provider") { value throws(ConfigError) in try value.name() }
        let users = reader.optional("allowedUsers", default: []) { value throws(ConfigError) in try value.list { item throws(ConfigError) in try item.nonEmptyString() } }
        let groups = reader.optional("allowedGroups", default: []) { value throws(ConfigError) in try value.list { item throws(ConfigError) in try item.nonEmptyString() } }
        reader.finish()
        guard let parsed else { return .passthrough }  // missing or invalid: reported already, the file is rejected
        guard let method = parsed else {
            for key in ["provider", "allowedUsers", "allowedGroups"] where reader.keyMark(key) != nil {
                throw reader.errorAtKey(key, "only applies when the relay authenticates users (method oidc or jwt); this app is passthrough")
            }
            return .passthrough
        }
        return .authenticated(AccessPolicy(method: method, provider: provider, allowedUsers: users, allowedGroups: groups))
    }

    /// `passthrough` (nil), `oidc` or `jwt`.
    private static func authenticationMethod(_ value: ValueNode, allowed: String) throws(ConfigError) -> AuthenticationMethod? {
        let text = try value.string()
        if text == "passthrough" { return nil }
        guard let method = AuthenticationMethod(rawValue: text) else { throw value.error("must be one of: \(allowed) (got \(quoted(text)))") }
        return method
    }

    private static func ssoConfig(_ value: ValueNode) throws(ConfigError) -> SSOConfig {
        var reader = try value.mapping()
        let handler = reader.required("handler") { value throws(ConfigError) in try value.nonEmptyString() }
        var settings: [String: ConfigValue] = [:]
        var positions: [String: ConnectorApp.Source.Position] = [:]
        for entry in reader.takeRemaining() {
            do throws(ConfigError) {
                settings[entry.key] = try entry.value.configValue(positions: &positions)
                if let mark = entry.keyMark { positions[entry.value.keyPath] = .init(line: mark.line, column: mark.column) }
            } catch {
                value.diagnostics.report(error)
            }
        }
        // Relative to `sso`, as handlers name them.
        let prefix = value.keyPath + "."
        let relative = Dictionary(positions.map { ($0.key.hasPrefix(prefix) ? String($0.key.dropFirst(prefix.count)) : $0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        return SSOConfig(handler: handler ?? "passthrough", settings: settings, settingPositions: relative)
    }

    private static func appTimeouts(_ value: ValueNode) throws(ConfigError) -> AppTimeouts {
        var reader = try value.mapping()
        let defaults = AppTimeouts()
        let timeouts = AppTimeouts(
            connect: reader.optional("connect", default: defaults.connect) { value throws(ConfigError) in try value.duration() },
            response: reader.optional("response", default: defaults.response) { value throws(ConfigError) in try value.duration() },
            idle: reader.optional("idle", default: defaults.idle) { value throws(ConfigError) in try value.duration() },
            sso: reader.optional("sso", default: defaults.sso) { value throws(ConfigError) in
                let duration = try value.duration()
                guard duration >= .milliseconds(100), duration <= .seconds(600) else { throw value.error("must be between 100ms and 10m") }
                return duration
            }
        )
        reader.finish()
        return timeouts
    }

    private static func backendTLS(_ value: ValueNode) throws(ConfigError) -> BackendTLS {
        var reader = try value.mapping()
        let caFile = reader.optional("caFile") { value throws(ConfigError) in
            let path = try value.nonEmptyString()
            guard path.hasPrefix("/") else {
                throw value.error("must be an absolute path on the connector host (got \(quoted(path)))")
            }
            return path
        }
        let caPEM = reader.optional("caPEM") { value throws(ConfigError) in
            let pem = try value.nonEmptyString()
            guard pem.contains("-----BEGIN CERTIFICATE-----") else {
                throw value.error("must be a PEM bundle of CA certificates (\"-----BEGIN CERTIFICATE-----\" ...)")
            }
            return pem
        }
        let serverName = reader.optional("serverName") { value throws(ConfigError) in try value.serverName() }
        reader.finish()
        if caFile != nil, caPEM != nil {
            throw reader.errorAtKey("caPEM", "set either caFile or caPEM, not both")
        }
        return BackendTLS(caFile: caFile, caPEM: caPEM, serverName: serverName)
    }
}
