import Foundation
import SallyportConfig
import Testing

/// A minimal valid app file; each test appends or changes lines. Lines 1 to 5.
let minimalApp = """
    name: wiki
    externalURL: https://wiki.apps.example.com/
    internalURL: http://wiki.corp.internal:8080/
    connectorGroup: default
    preAuthentication: passthrough

    """

/// The error `parseApp` throws for `yaml`, or nil when it parses.
func appError(_ yaml: String, file: String = "apps/wiki.yaml") -> ConfigError? {
    do {
        _ = try ConfigLoader.parseApp(yaml: yaml, file: file)
        return nil
    } catch {
        return error
    }
}

/// The repository's `config/` directory, found from this file's path.
func exampleConfigDirectory(filePath: String = #filePath) -> String {
    URL(fileURLWithPath: filePath)
        .deletingLastPathComponent()  // SallyportConfigTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()  // package root
        .appendingPathComponent("config")
        .path
}

/// A fresh directory under the system temporary directory, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        path =
            FileManager.default.temporaryDirectory
            .appendingPathComponent("sallyport-config-tests-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// Writes `text` to `name` inside the directory and returns the file's path.
    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        let file = "\(path)/\(name)"
        try FileManager.default.createDirectory(
            atPath: (file as NSString).deletingLastPathComponent,
            withIntermediateDirectories: true
        )
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}
