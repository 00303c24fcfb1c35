internal import Foundation

/// The result of loading the apps directory: what loaded, and what did not and why.
///
/// Every app file ends up either in `appsByFile` or in `errorFiles`, so the relay can keep the last good
/// version of a file that has just been broken, and drop the apps of files that were deleted.
public struct AppDirectoryLoad: Sendable {
    /// Valid apps, sorted by name.
    public var apps: [AppConfig]
    /// Every problem found, sorted by file and line.
    public var errors: [ConfigError]
    /// The apps in `apps`, by source file path.
    public var appsByFile: [String: AppConfig]
    /// Files that had errors, including apps left out for conflicting with an earlier file.
    public var errorFiles: Set<String>

    /// Creates a load result.
    public init(apps: [AppConfig] = [], errors: [ConfigError] = [], appsByFile: [String: AppConfig] = [:], errorFiles: Set<String> = []) {
        self.apps = apps
        self.errors = errors
        self.appsByFile = appsByFile
        self.errorFiles = errorFiles
    }
}

enum AppDirectory {
    static func load(directory: String) -> AppDirectoryLoad {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: directory, isDirectory: &isDirectory) else {
            return AppDirectoryLoad()  // the directory may be created later; the relay keeps polling
        }
        guard isDirectory.boolValue else {
            return AppDirectoryLoad(errors: [ConfigError(file: directory, message: "the apps directory is not a directory")])
        }
        let names: [String]
        do {
            names = try manager.contentsOfDirectory(atPath: directory)
        } catch {
            return AppDirectoryLoad(errors: [ConfigError(file: directory, message: "cannot list the apps directory: \(error.localizedDescription)")])
        }

        var errors: [ConfigError] = []
        var errorFiles: Set<String> = []
        var parsed: [AppConfig] = []
        for name in names.sorted() where isAppFileName(name) {
            let path = ConfigPaths.resolve(name, relativeTo: directory)
            var isSubdirectory: ObjCBool = false
            guard manager.fileExists(atPath: path, isDirectory: &isSubdirectory), !isSubdirectory.boolValue else { continue }
            let result: Result<AppConfig, FileProblems>
            switch ConfigText.read(file: path) {
            case .success(let text): result = AppFile.parse(yaml: text, file: path)
            case .failure(let error): result = .failure(FileProblems(errors: [error]))
            }
            switch result {
            case .success(let app): parsed.append(app)
            case .failure(let problems):
                errors += problems.errors
                errorFiles.insert(path)
            }
        }

        let checked = Conflicts.check(parsed)
        errors += checked.errors
        errorFiles.formUnion(checked.errors.map(\.file))
        return AppDirectoryLoad(
            apps: checked.apps,
            errors: errors.sorted(by: ConfigError.inFileOrder),
            appsByFile: Dictionary(checked.apps.map { ($0.sourceFile, $0) }, uniquingKeysWith: { first, _ in first }),
            errorFiles: errorFiles
        )
    }

    /// `*.yaml` and `*.yml`, not hidden (editors' swap and temporary files start with ".").
    static func isAppFileName(_ name: String) -> Bool {
        !name.hasPrefix(".") && (name.hasSuffix(".yaml") || name.hasSuffix(".yml"))
    }
}

/// Checks that no two apps share a name or an external URL.
enum Conflicts {
    /// Walks the apps in source-file order; an app that clashes with an earlier one is reported on its own
    /// file and left out. The kept apps come back sorted by name.
    static func check(_ apps: [AppConfig]) -> (apps: [AppConfig], errors: [ConfigError]) {
        let ordered = apps.enumerated().sorted { lhs, rhs in
            (lhs.element.sourceFile, lhs.offset) < (rhs.element.sourceFile, rhs.offset)
        }.map(\.element)
        var byName: [String: AppConfig] = [:]
        var byRoute: [Route: AppConfig] = [:]
        var kept: [AppConfig] = []
        var errors: [ConfigError] = []
        for app in ordered {
            var clashes = false
            if let earlier = byName[app.name] {
                clashes = true
                errors.append(
                    error(
                        in: app,
                        key: "name",
                        "the name \(quoted(app.name)) is already used by the app\(location(of: earlier)); app names must be unique"
                    )
                )
            }
            let route = Route(app.externalURL)
            if let earlier = byRoute[route] {
                clashes = true
                errors.append(
                    error(
                        in: app,
                        key: "externalURL",
                        "\(app.externalURL.string) is already served by app \(quoted(earlier.name))\(location(of: earlier)); "
                            + "each externalURL (host, port and path) must be unique"
                    )
                )
            }
            guard !clashes else { continue }
            byName[app.name] = app
            byRoute[route] = app
            kept.append(app)
        }
        return (kept.sorted { ($0.name, $0.sourceFile) < ($1.name, $1.sourceFile) }, errors)
    }

    static func error(in app: AppConfig, key: String, _ message: String) -> ConfigError {
        let position = app.keyPositions[key] ?? app.keyPositions[String(key.prefix { $0 != "." })]
        return ConfigError(file: app.sourceFile, line: position?.line, column: position?.column, key: key, message: message)
    }

    /// " in FILE" for the earlier app, to name it in the message on the later one.
    private static func location(of app: AppConfig) -> String {
        app.sourceFile.isEmpty ? "" : " in \(app.sourceFile)"
    }

    private struct Route: Hashable {
        var host: String
        var port: Int
        var pathPrefix: String

        init(_ url: ExternalURL) {
            host = url.host
            port = url.port ?? 443
            pathPrefix = url.pathPrefix
        }
    }
}

/// Reads a config file as UTF-8 text.
enum ConfigText {
    static func read(file: String) -> Result<String, ConfigError> {
        guard let data = FileManager.default.contents(atPath: file) else {
            let reason = FileManager.default.fileExists(atPath: file) ? "cannot read the file (check its permissions)" : "file not found"
            return .failure(ConfigError(file: file, message: reason))
        }
        guard let text = String(data: data, encoding: .utf8) else {
            return .failure(ConfigError(file: file, message: "the file is not UTF-8 text"))
        }
        return .success(text)
    }
}
