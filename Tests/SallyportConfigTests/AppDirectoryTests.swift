import Foundation
import SallyportConfig
import Testing

/// An app file with the given name and external URL; `name` is on line 1, `externalURL` on line 2.
private func app(_ name: String, _ externalURL: String) -> String {
    """
    name: \(name)
    externalURL: \(externalURL)
    internalURL: http://\(name).corp.internal/
    connectorGroup: default
    preAuthentication: passthrough

    """
}

@Suite("Loading the apps directory")
struct AppDirectoryTests {
    @Test func badFileIsReportedAndTheOthersLoad() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let alpha = try directory.write("alpha.yaml", app("alpha", "https://alpha.apps.example.com/"))
        let beta = try directory.write("beta.yml", app("beta", "https://beta.apps.example.com/"))
        let broken = try directory.write("broken.yaml", app("broken", "https://broken.apps.example.com/") + "timeout: 5s\n")
        try directory.write(".hidden.yaml", "this: is not an app\n")
        try directory.write("notes.txt", "not yaml at all: [\n")
        try directory.write("nested/deep.yaml", app("deep", "https://deep.apps.example.com/"))
        try directory.write("folder.yaml/inner.yaml", app("inner", "https://inner.apps.example.com/"))

        let load = ConfigLoader.loadApps(directory: directory.path)
        #expect(load.apps.map(\.name) == ["alpha", "beta"])
        #expect(load.apps.map(\.sourceFile) == [alpha, beta])
        #expect(load.errors == [ConfigError(file: broken, line: 6, column: 1, key: "timeout", message: #"unknown key (did you mean "timeouts"?)"#)])
        #expect(load.errorFiles == [broken])
        #expect(Set(load.appsByFile.keys) == [alpha, beta])
        #expect(load.appsByFile[alpha]?.name == "alpha")
    }

    @Test func everyProblemInABadFileIsReported() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let text = app("Broken", "http://broken.apps.example.com/") + "timeouts:\n  idle: forever\n"
        let file = try directory.write("broken.yaml", text)

        let load = ConfigLoader.loadApps(directory: directory.path)
        #expect(load.apps.isEmpty)
        #expect(load.errors.map(\.file) == [file, file, file])
        #expect(load.errors.map(\.line) == [1, 2, 7])
        #expect(load.errors.map(\.key) == ["name", "externalURL", "timeouts.idle"])
        #expect(load.errorFiles == [file])
    }

    @Test func unreadableContentIsReportedWithTheFile() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let empty = try directory.write("empty.yaml", "")
        let invalid = try directory.write("invalid.yaml", "name: [\n")

        let load = ConfigLoader.loadApps(directory: directory.path)
        #expect(load.apps.isEmpty)
        #expect(load.errors.map(\.file) == [empty, invalid])
        #expect(load.errors[0].message.hasPrefix("the file is empty"))
        #expect(load.errors[1].message.hasPrefix("invalid YAML"))
        #expect(load.errors[1].line != nil)
    }

    @Test func missingDirectoryLoadsAsEmpty() {
        let load = ConfigLoader.loadApps(directory: "/nonexistent/sallyport/apps")
        #expect(load.apps.isEmpty)
        #expect(load.errors.isEmpty)
        #expect(load.errorFiles.isEmpty)
    }

    @Test func sameExternalURLInTwoFilesRejectsTheLaterFile() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let first = try directory.write("a-wiki.yaml", app("wiki", "https://apps.example.com/wiki"))
        let second = try directory.write("b-wiki2.yaml", app("wiki2", "https://Apps.Example.com:443/wiki/"))

        let load = ConfigLoader.loadApps(directory: directory.path)
        #expect(load.apps.map(\.name) == ["wiki"])
        #expect(load.apps.first?.sourceFile == first)
        #expect(
            load.errors == [
                ConfigError(
                    file: second,
                    line: 2,
                    column: 1,
                    key: "externalURL",
                    message: "https://apps.example.com/wiki/ is already served by app \"wiki\" in \(first); "
                        + "each externalURL (host, port and path) must be unique"
                )
            ]
        )
        #expect(load.errorFiles == [second])
        #expect(Set(load.appsByFile.keys) == [first])
    }

    @Test func differentPathOrPortIsNoConflict() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("a.yaml", app("root", "https://apps.example.com/"))
        try directory.write("b.yaml", app("wiki", "https://apps.example.com/wiki/"))
        try directory.write("c.yaml", app("alt", "https://apps.example.com:8443/"))

        let load = ConfigLoader.loadApps(directory: directory.path)
        #expect(load.errors.isEmpty)
        #expect(load.apps.map(\.name) == ["alt", "root", "wiki"])
    }

    @Test func duplicateNamesRejectTheLaterFile() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let first = try directory.write("01.yaml", app("wiki", "https://wiki.apps.example.com/"))
        let second = try directory.write("02.yaml", "# a copy\n" + app("wiki", "https://wiki2.apps.example.com/"))

        let load = ConfigLoader.loadApps(directory: directory.path)
        #expect(load.apps.map(\.sourceFile) == [first])
        #expect(
            load.errors == [
                ConfigError(
                    file: second,
                    line: 2,
                    column: 1,
                    key: "name",
                    message: "the name \"wiki\" is already used by the app in \(first); app names must be unique"
                )
            ]
        )
        #expect(load.errorFiles == [second])
    }
}

@Suite("Cross-file checks on parsed apps")
struct CheckConflictsTests {
    @Test func laterFileByNameLosesWhateverTheInputOrder() throws {
        let early = try ConfigLoader.parseApp(yaml: app("wiki", "https://wiki.apps.example.com/"), file: "apps/a.yaml")
        let late = try ConfigLoader.parseApp(yaml: app("wiki", "https://other.apps.example.com/"), file: "apps/z.yaml")
        let other = try ConfigLoader.parseApp(yaml: app("blog", "https://blog.apps.example.com/"), file: "apps/m.yaml")

        let result = ConfigLoader.checkConflicts([late, other, early])
        #expect(result.apps == [other, early])  // sorted by name: blog, wiki
        #expect(result.errors.count == 1)
        #expect(result.errors.first?.file == "apps/z.yaml")
        #expect(result.errors.first?.line == 1)
        #expect(result.errors.first?.key == "name")
        #expect(result.errors.first?.message.contains("apps/a.yaml") == true)
    }

    @Test func bothClashesAreReported() throws {
        let early = try ConfigLoader.parseApp(yaml: app("wiki", "https://wiki.apps.example.com/"), file: "apps/a.yaml")
        let copy = try ConfigLoader.parseApp(yaml: app("wiki", "https://wiki.apps.example.com/"), file: "apps/b.yaml")
        let result = ConfigLoader.checkConflicts([early, copy])
        #expect(result.apps == [early])
        #expect(result.errors.map(\.key) == ["name", "externalURL"])
        #expect(result.errors.map(\.line) == [1, 2])
    }

    @Test func appsBuiltInCodeAreCheckedToo() throws {
        let first = AppConfig(
            name: "wiki",
            externalURL: try ExternalURL(parsing: "https://wiki.apps.example.com/"),
            internalURL: try InternalURL(parsing: "http://wiki.corp.internal/"),
            sourceFile: "one.yaml"
        )
        var second = first
        second.name = "wiki-copy"
        second.sourceFile = "two.yaml"

        let result = ConfigLoader.checkConflicts([second, first])
        #expect(result.apps == [first])
        #expect(
            result.errors == [
                ConfigError(
                    file: "two.yaml",
                    key: "externalURL",
                    message: "https://wiki.apps.example.com/ is already served by app \"wiki\" in one.yaml; "
                        + "each externalURL (host, port and path) must be unique"
                )
            ])
    }

    @Test func noAppsNoErrors() {
        let result = ConfigLoader.checkConflicts([])
        #expect(result.apps.isEmpty)
        #expect(result.errors.isEmpty)
    }
}
