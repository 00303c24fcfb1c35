/// Entry points for reading Sallyport's three kinds of config file.
///
/// Every loader is strict: an unknown key, a value of the wrong type, a bad URL or duration, or a missing
/// required key is an error naming the file, line, column and dotted key path.
/// Loaders do not check that referenced files exist; the services do that when they start.
public enum ConfigLoader {
    /// Parses one app file's text; `file` is used in errors. Throws the first problem in the file.
    public static func parseApp(yaml: String, file: String) throws(ConfigError) -> AppConfig {
        switch AppFile.parse(yaml: yaml, file: file) {
        case .success(let app): return app
        case .failure(let problems): throw problems.errors[0]
        }
    }

    /// Loads every `*.yaml` / `*.yml` file (not hidden, not in subdirectories) of `directory`, one app per file.
    ///
    /// A bad file is reported in `errors` (with every problem it has) and left out; the others still load.
    /// Two apps with the same name, or the same external host, port and path prefix, are an error on the
    /// later file in file-name order, which is left out. A directory that does not exist yet loads as empty.
    public static func loadApps(directory: String) -> AppDirectoryLoad {
        AppDirectory.load(directory: directory)
    }

    /// The cross-file checks of `loadApps` on an already-parsed set, such as the relay's merge of new and
    /// last-good files. Returns the kept apps, sorted by name, and an error for each app left out.
    public static func checkConflicts(_ apps: [AppConfig]) -> (apps: [AppConfig], errors: [ConfigError]) {
        Conflicts.check(apps)
    }

    /// Reads the relay's config file; relative paths in it are resolved against the file's directory.
    public static func loadRelay(file: String) throws(ConfigError) -> RelayConfig {
        try self.parseRelay(yaml: try ConfigText.read(file: file).get(), file: file)
    }

    /// Parses the relay's config text as if read from `file`. Throws the first problem.
    public static func parseRelay(yaml: String, file: String) throws(ConfigError) -> RelayConfig {
        switch RelayFile.parse(yaml: yaml, file: file) {
        case .success(let config): return config
        case .failure(let problems): throw problems.errors[0]
        }
    }

    /// Reads the relay's config file and reports every problem in it, not only the first.
    public static func checkRelay(file: String) -> Result<RelayConfig, ConfigProblems> {
        switch ConfigText.read(file: file) {
        case .failure(let error): return .failure(ConfigProblems(errors: [error]))
        case .success(let text): return RelayFile.parse(yaml: text, file: file).mapError { ConfigProblems(errors: $0.errors) }
        }
    }

    /// Reads a connector's config file and reports every problem in it, not only the first.
    public static func checkConnector(file: String) -> Result<ConnectorConfig, ConfigProblems> {
        switch ConfigText.read(file: file) {
        case .failure(let error): return .failure(ConfigProblems(errors: [error]))
        case .success(let text): return ConnectorFile.parse(yaml: text, file: file).mapError { ConfigProblems(errors: $0.errors) }
        }
    }

    /// Reads a connector's config file; relative paths in it are resolved against the file's directory.
    public static func loadConnector(file: String) throws(ConfigError) -> ConnectorConfig {
        try self.parseConnector(yaml: try ConfigText.read(file: file).get(), file: file)
    }

    /// Parses a connector's config text as if read from `file`. Throws the first problem.
    public static func parseConnector(yaml: String, file: String) throws(ConfigError) -> ConnectorConfig {
        switch ConnectorFile.parse(yaml: yaml, file: file) {
        case .success(let config): return config
        case .failure(let problems): throw problems.errors[0]
        }
    }
}

extension ConfigLoader {
    /// Checks each app's `preAuthentication` against the relay's identity providers and fills in the provider
    /// an app leaves implicit (the only one of its method). An app that names a missing provider, one of the
    /// other method, or leaves the choice ambiguous is an error at that key and is left out.
    public static func resolveProviders(
        _ apps: [AppConfig], providers: [String: AuthenticationMethod]
    ) -> (apps: [AppConfig], errors: [ConfigError]) {
        var kept: [AppConfig] = []
        var errors: [ConfigError] = []
        for var app in apps {
            guard var policy = app.preAuthentication.policy else {
                kept.append(app)
                continue
            }
            let sameMethod = providers.filter { $0.value == policy.method }.keys.sorted()
            if let name = policy.provider {
                guard let method = providers[name] else {
                    let known = providers.isEmpty ? "the relay config defines none" : "defined: \(providers.keys.sorted().joined(separator: ", "))"
                    errors.append(Conflicts.error(in: app, key: "preAuthentication.provider", "no identity provider \(quoted(name)) in the relay config (\(known))"))
                    continue
                }
                guard method == policy.method else {
                    errors.append(
                        Conflicts.error(in: app, key: "preAuthentication.provider", "provider \(quoted(name)) is \(method.rawValue), but method is \(policy.method.rawValue)")
                    )
                    continue
                }
            } else {
                guard sameMethod.count == 1 else {
                    let message = sameMethod.isEmpty
                        ? "the relay config has no \(policy.method.rawValue) identity provider; add one under identityProviders"
                        : "the relay has several \(policy.method.rawValue) providers (\(sameMethod.joined(separator: ", "))); name one with provider:"
                    errors.append(Conflicts.error(in: app, key: "preAuthentication", message))
                    continue
                }
                policy.provider = sameMethod[0]
                app.preAuthentication = .authenticated(policy)
            }
            kept.append(app)
        }
        return (kept, errors)
    }
}

/// Every problem of a config file, in file order; printed one per line.
public struct ConfigProblems: Error, CustomStringConvertible {
    public var errors: [ConfigError]
    public var description: String { self.errors.map { "\($0)" }.joined(separator: "\n") }
}
