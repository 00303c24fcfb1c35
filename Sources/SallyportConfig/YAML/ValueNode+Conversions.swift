/// Conversions for the value types of Sallyport's config files.
extension ValueNode {
    /// An app name or connector group: `[a-z0-9][a-z0-9-]{0,62}`.
    func name() throws(ConfigError) -> String {
        let text = try string()
        guard Names.isValidName(text) else { throw error("\(Names.nameRule) (got \(quoted(text)))") }
        return text
    }

    func externalURL() throws(ConfigError) -> ExternalURL {
        let text = try string()
        switch ExternalURL.parse(text) {
        case .success(let url): return url
        case .failure(let problem): throw error("\(problem.message) (got \(quoted(text)))")
        }
    }

    func internalURL() throws(ConfigError) -> InternalURL {
        let text = try string()
        switch InternalURL.parse(text) {
        case .success(let url): return url
        case .failure(let problem): throw error("\(problem.message) (got \(quoted(text)))")
        }
    }

    func hostPort(allowZeroPort: Bool) throws(ConfigError) -> HostPort {
        let text = try string()
        switch HostPort.parse(text, allowZeroPort: allowZeroPort) {
        case .success(let address): return address
        case .failure(let problem): throw error(problem.message)
        }
    }

    /// A host name or IP address to verify on a certificate, lowercased.
    func serverName() throws(ConfigError) -> String {
        let text = try nonEmptyString()
        switch HostSyntax.parse(text, bracketed: false) {
        case .success(let host): return host
        case .failure(let problem): throw error("must be a host name to verify on the certificate; \(problem.message)")
        }
    }

    /// A file path, resolved against the directory of the config file unless it is absolute.
    func path(relativeTo directory: String) throws(ConfigError) -> String {
        ConfigPaths.resolve(try nonEmptyString(), relativeTo: directory)
    }
}

enum ConfigPaths {
    /// The directory part of `file` ("" when it has none).
    static func directory(of file: String) -> String {
        guard let slash = file.lastIndex(of: "/") else { return "" }
        let directory = String(file[..<slash])
        return directory.isEmpty ? "/" : directory
    }

    /// `path` when absolute, else `directory/path`.
    static func resolve(_ path: String, relativeTo directory: String) -> String {
        if path.hasPrefix("/") || directory.isEmpty { return path }
        var relative = Substring(path)
        while relative.hasPrefix("./") { relative = relative.dropFirst(2) }
        if relative.isEmpty || relative == "." { return directory }
        return directory.hasSuffix("/") ? "\(directory)\(relative)" : "\(directory)/\(relative)"
    }
}
