// `swift package scaffold-sso-handler --name NAME [--output DIR]`: a thin command plugin that runs the
// `sallyport-scaffold` tool, which writes a new SSO handler plugin package.
import Foundation
import PackagePlugin

@main
struct ScaffoldSSOHandler: CommandPlugin {
    func performCommand(context: PluginContext, arguments: [String]) async throws {
        let tool = try context.tool(named: "sallyport-scaffold")
        let process = Process()
        process.executableURL = tool.url
        process.arguments = arguments + ["--sallyport-path", context.package.directoryURL.path]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            Diagnostics.error("sallyport-scaffold exited with \(process.terminationStatus)")
            return
        }
    }
}
