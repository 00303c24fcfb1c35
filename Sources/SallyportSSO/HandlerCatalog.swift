public import SallyportConfig
public import SallyportPluginAPI

/// A factory whose handlers are made in another process (a plugin host), so made asynchronously; its
/// `makeHandler(context:)` is not used.
public protocol RemoteHandlerFactory: SSOHandlerFactory {
    func makeRemoteHandler(context: HandlerContext) async throws -> any SSOHandler
}

/// The SSO handlers a process knows, by name: the built-in ones, plus plugins on a connector.
public struct HandlerCatalog: Sendable {
    /// Factories by handler name.
    public private(set) var factories: [String: any SSOHandlerFactory]

    /// The handlers that ship with Sallyport.
    /// (`kcd` here only checks settings, with no Kerberos at all; a connector puts the handler of `SallyportKCD`,
    /// with its Kerberos credentials, in its place.)
    public static let builtIn = HandlerCatalog(factories: [PassthroughHandlerFactory(), HeaderHandlerFactory(), KCDSettingsFactory()])

    /// A catalog of these factories; a later factory of the same name does not replace an earlier one.
    public init(factories: [any SSOHandlerFactory]) {
        var byName: [String: any SSOHandlerFactory] = [:]
        for factory in factories where byName[factory.name] == nil { byName[factory.name] = factory }
        self.factories = byName
    }

    /// The plugin each plugin handler came from, by handler name.
    public private(set) var origins: [String: String] = [:]

    /// Adds a factory unless one of that name is already known; returns whether it was added. `plugin`: the
    /// plugin it comes from (for logs and metrics).
    public mutating func add(_ factory: any SSOHandlerFactory, plugin: String? = nil) -> Bool {
        guard factories[factory.name] == nil else { return false }
        factories[factory.name] = factory
        if let plugin { origins[factory.name] = plugin }
        return true
    }

    /// Puts `factory` in place of the one of the same name (a built-in handler given the host's services).
    public mutating func replace(_ factory: any SSOHandlerFactory) {
        factories[factory.name] = factory
    }

    /// Whether `name` can be a handler name: 1 to 63 ASCII lowercase letters, digits or `-`, starting with a
    /// letter (the scaffold applies the same rule to the names it writes).
    public static func isValidName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, ("a"..."z").contains(first), name.unicodeScalars.count <= 63 else { return false }
        return name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
    }

    /// The app's `sso` settings in the plugin API's form, each mapping in the app file's order (by the keys'
    /// positions; sorted by name where they are unknown).
    public static func settings(of app: ConnectorApp) -> SettingsMap {
        Self.map(app.sso.settings, path: "sso", positions: app.source.positions)
    }

    static func map(_ entries: [String: ConfigValue], path: String, positions: [String: ConnectorApp.Source.Position]) -> SettingsMap {
        func place(_ key: String) -> (Int, Int, String) {
            let position = positions["\(path).\(key)"]
            return (position?.line ?? .max, position?.column ?? .max, key)
        }
        let ordered = entries.keys.sorted { place($0) < place($1) }
        return SettingsMap(ordered.map { SettingsMap.Entry(key: $0, value: convert(entries[$0]!, path: "\(path).\($0)", positions: positions)) })
    }

    static func convert(_ value: ConfigValue, path: String, positions: [String: ConnectorApp.Source.Position]) -> SettingValue {
        switch value {
        case .string(let text): .string(text)
        case .int(let number): .int(number)
        case .double(let number): .double(number)
        case .bool(let flag): .bool(flag)
        case .list(let items): .list(items.enumerated().map { convert($1, path: "\(path)[\($0)]", positions: positions) })
        case .map(let entries): .map(map(entries, path: path, positions: positions))
        case .null: .null
        }
    }

    /// The outcome of making an app's handler.
    public enum Made: Sendable {
        case handler(any SSOHandler, factory: any SSOHandlerFactory)
        /// The app cannot be served here; each error names its file, line and key.
        case failed([ConfigError])
    }

    /// Makes the handler of `app`, checking its settings and that it gets an identity when it needs one.
    /// `unknownIsError`: whether a handler name this catalog lacks is an error (on a connector) or is left to
    /// the connectors (on the relay, which loads no plugins).
    public func make(for app: ConnectorApp, context: (ConnectorApp) -> HandlerContext, unknownIsError: Bool = true) async -> Made? {
        guard let factory = factories[app.sso.handler] else {
            guard unknownIsError else { return nil }
            let known = factories.keys.sorted().joined(separator: ", ")
            return .failed([app.error(at: "sso.handler", "no SSO handler \(quotedName(app.sso.handler)) is available here (known: \(known)); is its plugin installed and loaded?")])
        }
        if factory.requiresIdentity, !app.sendsIdentity { return .failed([Self.identityRequired(app, handler: factory.name)]) }
        let handlerContext = context(app)
        do {
            if let remote = factory as? any RemoteHandlerFactory {
                return .handler(try await remote.makeRemoteHandler(context: handlerContext), factory: factory)
            }
            return .handler(try factory.makeHandler(context: handlerContext), factory: factory)
        } catch {
            return .failed(Self.errors(in: app, handler: factory.name, thrown: error))
        }
    }

    /// What a factory threw, as located errors: one per ``SettingsError``.
    public static func errors(in app: ConnectorApp, handler: String, thrown error: any Error) -> [ConfigError] {
        switch error {
        case let error as SettingsError:
            return [Self.error(in: app, key: error.key, error.message)]
        case let errors as SettingsErrors where !errors.errors.isEmpty:
            return errors.errors.map { Self.error(in: app, key: $0.key, $0.message) }
        default:
            return [Self.error(in: app, key: nil, "the \(handler) handler refused the settings: \(error)")]
        }
    }

    /// Checks every app's built-in SSO handler settings, without making any handler (the relay's load-time
    /// check, and `config validate`). Handlers of plugins are left to the connectors. With `keptClaims` (the
    /// claims each identity provider passes on), the `header` handler's templates must name only standard
    /// attributes or claims the app's provider keeps.
    public func check(_ apps: [AppConfig], keptClaims: [String: [String]]? = nil) -> (apps: [AppConfig], errors: [ConfigError]) {
        var kept: [AppConfig] = []
        var errors: [ConfigError] = []
        for app in apps {
            let view = app.forConnector
            switch Self.checkBuiltIn(view) {
            case .failure(let error):
                errors.append(error)
            case .success(let header?):
                if let keptClaims, let provider = app.preAuthentication.policy?.provider,
                    let error = Self.unknownAttribute(in: header, app: view, provider: provider, kept: keptClaims[provider] ?? [])
                {
                    errors.append(error)
                } else {
                    kept.append(app)
                }
            case .success(nil):
                kept.append(app)
            }
        }
        return (kept, errors)
    }

    /// A built-in handler's settings read and checked, as its factory would (the header handler's are returned
    /// for the template check); success for handlers that are not built in.
    static func checkBuiltIn(_ app: ConnectorApp) -> Result<HeaderSettings?, ConfigError> {
        let settings = Self.settings(of: app)
        let requiresIdentity = ["header", "kcd"].contains(app.sso.handler)
        if requiresIdentity, !app.sendsIdentity { return .failure(Self.identityRequired(app, handler: app.sso.handler)) }
        do {
            switch app.sso.handler {
            case "passthrough":
                try PassthroughHandlerFactory.check(settings)
                return .success(nil)
            case "header":
                return .success(try HeaderSettings(settings: settings))
            case "kcd":
                _ = try KCDSettings(settings: settings)
                return .success(nil)
            default:
                return .success(nil)
            }
        } catch {
            return .failure(Self.errors(in: app, handler: app.sso.handler, thrown: error)[0])
        }
    }

    static func identityRequired(_ app: ConnectorApp, handler: String) -> ConfigError {
        Self.error(in: app, key: nil, "the \(handler) handler needs the user's identity, but preAuthentication is passthrough; use oidc or jwt")
    }

    /// What the relay checks on apps beyond their own files: the identity provider each names (filled in when
    /// implicit), and the built-in handlers' settings, templates included. Plugin handlers are left to the
    /// connectors. Used by the relay's catalog and by `config validate --relay`.
    public static func checkOnRelay(_ apps: [AppConfig], identityProviders: [IdentityProviderConfig]) -> (apps: [AppConfig], errors: [ConfigError]) {
        let methods = Dictionary(identityProviders.map { ($0.name, $0.method) }, uniquingKeysWith: { a, _ in a })
        let kept = Dictionary(identityProviders.map { ($0.name, $0.claims.keep) }, uniquingKeysWith: { a, _ in a })
        let resolved = ConfigLoader.resolveProviders(apps, providers: methods)
        let checked = builtIn.check(resolved.apps, keptClaims: kept)
        return (checked.apps, resolved.errors + checked.errors)
    }

    /// The first template attribute that is neither standard nor kept by the provider.
    static func unknownAttribute(in handler: HeaderSettings, app: ConnectorApp, provider: String, kept: [String]) -> ConfigError? {
        for header in handler.headers {
            for case .attribute(let name) in header.parts where !HeaderSettings.standardAttributes.contains(name) && !kept.contains(name) {
                let keptList = kept.isEmpty ? "it keeps none" : "it keeps \(kept.joined(separator: ", "))"
                return Self.error(
                    in: app, key: "headers.\(header.name)",
                    "names {\(name)}, which is neither a standard attribute (\(HeaderSettings.standardAttributes.joined(separator: ", "))) nor a claim provider \"\(provider)\" keeps (\(keptList); see claims.keep in the relay config)"
                )
            }
        }
        return nil
    }

    /// A context whose services do nothing: for checking settings only.
    public static func validationContext(_ app: ConnectorApp) -> HandlerContext {
        HandlerContext(
            appName: app.name, settings: settings(of: app), logger: PluginLogger { _, _, _ in }, metrics: PluginMetrics { _, _, _ in },
            blockingExecutor: { $0() }
        )
    }

    /// An error at `sso.<key>` (the line of the key's first part) or at `sso` itself.
    static func error(in app: ConnectorApp, key: String?, _ message: String) -> ConfigError {
        app.error(at: key.map { "sso.\($0)" } ?? "sso", message)
    }
}

private func quotedName(_ name: String) -> String { "\"\(name)\"" }
