import Foundation
import SallyportTesting
import Testing

/// Every end-to-end suite runs inside this one, one test at a time: they start real processes, measure
/// time and memory, and must not disturb each other on a small CI machine.
@Suite("End to end", .serialized)
enum EndToEnd {}

extension EndToEnd {
    /// The path of a helper script in `Tests/EndToEndTests/Resources`.
    static func resource(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Resources").appendingPathComponent(name).path
    }

    /// Keeps a file a test made for people to look at (a screenshot) in `SALLYPORT_TEST_ARTEFACTS`, by default
    /// `.build/test-artefacts/` of the package: test directories are removed, this one is not.
    static func keepArtefact(_ path: String, as name: String) {
        let directory =
            ProcessInfo.processInfo.environment["SALLYPORT_TEST_ARTEFACTS"]
            ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../.build/test-artefacts").standardized.path
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let target = (directory as NSString).appendingPathComponent(name)
        try? FileManager.default.removeItem(atPath: target)
        try? FileManager.default.copyItem(atPath: path, toPath: target)
    }

    /// The Python that runs the test peers: the virtual environment `scripts/setup-test-deps.sh` makes
    /// (`SALLYPORT_TEST_PYTHON`, else its default place), so a stock Debian's externally managed Python needs
    /// no pip; `python3` from PATH when there is none.
    static let python: String = {
        if let chosen = ProcessInfo.processInfo.environment["SALLYPORT_TEST_PYTHON"], !chosen.isEmpty { return chosen }
        let venv = "/opt/sallyport-test-venv/bin/python3"
        return FileManager.default.isExecutableFile(atPath: venv) ? venv : "python3"
    }()

    /// Starts a Python peer from `Resources` and waits until it prints "listening".
    static func startPythonPeer(_ script: String, _ arguments: [String], logFile: String) async throws -> ChildProcess {
        let peer = try ChildProcess.launch(EndToEnd.python, [resource(script)] + arguments, logFile: logFile)
        try await peer.waitForLog(containing: "listening", timeout: .seconds(20))
        return peer
    }

    /// Runs `body` with a deployment serving `hosts` and an nginx backend in its directory; stops both however
    /// `body` ends, so a failed expectation never leaves processes behind.
    static func withNginx(hosts: [String], _ body: (Deployment, Nginx) async throws -> Void) async throws {
        let deployment = try Deployment(hosts: hosts)
        let nginx: Nginx
        do {
            nginx = try await Nginx.start(directory: deployment.directory)
        } catch {
            await deployment.shutdown()
            throw error
        }
        do {
            try await body(deployment, nginx)
        } catch {
            await nginx.stop()
            await deployment.shutdown()
            throw error
        }
        await nginx.stop()
        await deployment.shutdown()
    }
}
