// The tool behind `swift package scaffold-sso-handler`: writes a new SSO handler plugin package.
import Foundation
import SallyportScaffold

var arguments = Array(CommandLine.arguments.dropFirst())
@MainActor func option(_ name: String) -> String? {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    defer { arguments.removeSubrange(index...index + 1) }
    return arguments[index + 1]
}
let usage = "usage: swift package scaffold-sso-handler --name NAME [--output DIR] (run in a Sallyport checkout)"
guard let name = option("--name") else {
    FileHandle.standardError.write(Data((usage + "\n").utf8))
    exit(2)
}
let sallyport = option("--sallyport-path") ?? FileManager.default.currentDirectoryPath
let output = option("--output") ?? (sallyport + "/" + name)
guard arguments.isEmpty else {
    FileHandle.standardError.write(Data("unknown arguments: \(arguments.joined(separator: " "))\n\(usage)\n".utf8))
    exit(2)
}
do {
    let files = try Scaffold(name: name, output: output, sallyportPath: sallyport).write()
    print("wrote \(files.count) files to \(output)")
    print("next: cd \(output) && swift test && swift build -c release --product \(Scaffold(name: name, output: output, sallyportPath: sallyport).moduleName)")
} catch {
    FileHandle.standardError.write(Data("scaffold-sso-handler: \(error)\n".utf8))
    exit(1)
}
