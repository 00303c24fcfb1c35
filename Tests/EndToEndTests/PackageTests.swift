import Foundation
import SallyportTesting
import Testing

extension EndToEnd {
    /// The Debian package: built by scripts/package.sh, installed with dpkg, run from its installed path, its
    /// units checked by systemd-analyze, and purged again.
    @Suite("Package")
    struct PackageTests {
        static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized.path

        static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> (status: Int32, output: String) {
            try Command.run(executable, arguments, environment: environment, directory: Self.root)
        }

        @Test("scripts/package.sh builds a .deb that installs the binary, plugin API, Swift runtime, units, docs and examples; it runs from /usr/bin without the toolchain, the units pass systemd-analyze verify, and purge removes it")
        func debianPackage() async throws {
            let installed = try Self.run("/usr/bin/dpkg-query", ["-W", "-f", "${Status}", "sallyport"])
            try #require(!installed.output.contains("install ok installed"), "a sallyport package is installed on this machine; the test does not touch it")
            let output = try TestDirectory(prefix: "sallyport-package")
            defer { output.remove() }
            let binaries = URL(fileURLWithPath: try BuiltProduct.path("sallyport")).deletingLastPathComponent().path
            let built = try Self.run("/usr/bin/bash", ["scripts/package.sh", "--configuration", "debug", "--bin", binaries, "--output", output.path])
            try #require(built.status == 0, "\(built.output)")
            let deb = try #require(built.output.split(separator: "\n").last.map(String.init), "\(built.output)")
            #expect(deb.hasSuffix("_amd64.deb") || deb.hasSuffix("_arm64.deb"), "\(deb)")

            let contents = try Self.run("/usr/bin/dpkg-deb", ["--contents", deb]).output
            for path in [
                "./usr/bin/sallyport", "./usr/lib/sallyport/libSallyportPluginAPI.so", "./usr/lib/sallyport/libswiftCore.so",
                "./lib/systemd/system/sallyport-relay.service", "./lib/systemd/system/sallyport-relay.socket", "./lib/systemd/system/sallyport-connector.service",
                "./usr/share/doc/sallyport/operations.md", "./usr/share/doc/sallyport/examples/relay.yaml", "./usr/share/doc/sallyport/examples/apps/wiki.yaml",
            ] {
                #expect(contents.contains(path), "\(path) is not in the package")
            }

            let install = try Self.run("/usr/bin/dpkg", ["-i", deb])
            defer { _ = try? Self.run("/usr/bin/dpkg", ["--purge", "sallyport"]) }
            try #require(install.status == 0, "\(install.output)")
            // From the installed path, with an environment that knows nothing of the toolchain.
            let version = try Self.run("/usr/bin/sallyport", ["--version"], environment: ["PATH": "/usr/bin:/bin"])
            #expect(version.status == 0 && !version.output.isEmpty, "\(version.output)")
            #expect(version.output == (try Self.run(BuiltProduct.path("sallyport"), ["--version"]).output))
            let libraries = try Self.run("/usr/bin/ldd", ["/usr/bin/sallyport"]).output
            #expect(!libraries.contains("/opt/swift") && !libraries.contains("not found"), "\(libraries)")
            #expect(libraries.contains("/usr/lib/sallyport/libswiftCore.so"), "\(libraries)")

            let verify = try Self.run(
                "/usr/bin/systemd-analyze",
                ["verify", "/lib/systemd/system/sallyport-relay.service", "/lib/systemd/system/sallyport-relay.socket", "/lib/systemd/system/sallyport-connector.service"]
            )
            #expect(verify.status == 0, "\(verify.output)")
            #expect(!verify.output.contains("sallyport-"), "systemd-analyze has something to say about the units:\n\(verify.output)")

            #expect(try Self.run("/usr/bin/id", ["-u", "sallyport"]).status == 0, "the sallyport system user exists")
            for directory in ["/etc/sallyport", "/var/lib/sallyport"] {
                let attributes = try FileManager.default.attributesOfItem(atPath: directory)
                #expect(attributes[.ownerAccountName] as? String == "sallyport", "\(directory) belongs to sallyport")
                #expect((attributes[.posixPermissions] as? Int) == 0o750, "\(directory) is 0750")
            }

            let purge = try Self.run("/usr/bin/dpkg", ["--purge", "sallyport"])
            #expect(purge.status == 0, "\(purge.output)")
            #expect(!FileManager.default.fileExists(atPath: "/usr/bin/sallyport") && !FileManager.default.fileExists(atPath: "/etc/sallyport"))
            #expect(try Self.run("/usr/bin/id", ["-u", "sallyport"]).status != 0, "purge removes the user")
        }
    }
}
