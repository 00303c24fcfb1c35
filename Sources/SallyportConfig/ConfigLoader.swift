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
        let text = try ConfigText.read(file: file).get()
        switch RelayFile.parse(yaml: text, file: file) {
        case .success(let config): return config
        case .failure(let problems): throw problems.errors[0]
        }
    }

    /// Reads a connector's config file; relative paths in it are resolved against the file's directory.
    public static func loadConnector(file: String) throws(ConfigError) -> ConnectorConfig {
        let text = try ConfigText.read(file: file).get()
        switch ConnectorFile.parse(yaml: text, file: file) {
        case .success(let config): return config
        case .failure(let problems): throw problems.errors[0]
        }
    }
}
