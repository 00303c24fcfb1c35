import Foundation

/// Runs SwiftPM on another package (an SSO handler plugin) from a test, the way an integrator would.
public enum SwiftPackage {
    /// Runs `swift ARGUMENTS` in `directory`; throws with the output's tail when it fails.
    @discardableResult
    public static func run(_ arguments: [String], in directory: String, log: String, timeout: Duration = .seconds(600)) async throws -> String {
        let process = try ChildProcess.launch("/usr/bin/env", ["swift"] + arguments, logFile: log, currentDirectory: directory)
        guard let status = await process.waitForExit(timeout: timeout) else {
            await process.terminate()
            throw HarnessError(.timedOut, "swift \(arguments.joined(separator: " ")) in \(directory) did not finish within \(timeout)")
        }
        let output = process.log()
        guard status == 0 else {
            throw HarnessError(.commandFailed, "swift \(arguments.joined(separator: " ")) in \(directory) exited \(status):\n\(tail(output))")
        }
        return output
    }

    /// Builds a dynamic library product and returns the path of its `lib<product>.so` (debug build, like the
    /// `sallyport` under test). `scratchPath`: a build directory of its own (a clean build; an incremental one
    /// can keep a plugin's compiled-in ABI stamp from before a plugin API change).
    public static func buildLibrary(_ product: String, in directory: String, scratchPath: String? = nil, log: String) async throws -> String {
        let scratch = scratchPath ?? directory + "/.build"
        try await self.run(["build", "--product", product, "--scratch-path", scratch], in: directory, log: log)
        let path = scratch + "/debug/lib\(product).so"
        guard FileManager.default.fileExists(atPath: path) else { throw HarnessError(.notFound, "\(path) was not built") }
        return path
    }
}
