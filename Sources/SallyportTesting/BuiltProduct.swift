import Foundation

/// Locates executables that `swift build` put next to the test bundle, such as `.build/debug/sallyport`.
public enum BuiltProduct {
    /// The path of the executable `name`, searching the directory of the running test binary and its parents.
    ///
    /// Throws ``HarnessError`` naming the directories searched if the product was not built.
    public static func path(_ name: String) throws -> String {
        let manager = FileManager.default
        let executable =
            (try? manager.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? Bundle.main.executablePath
            ?? CommandLine.arguments[0]
        var directory = URL(fileURLWithPath: executable).deletingLastPathComponent().standardizedFileURL
        var searched: [String] = []
        while true {
            let candidate = directory.appendingPathComponent(name).path
            searched.append(directory.path)
            var isDirectory: ObjCBool = false
            if manager.fileExists(atPath: candidate, isDirectory: &isDirectory), !isDirectory.boolValue,
                manager.isExecutableFile(atPath: candidate)
            {
                return candidate
            }
            let parent = directory.deletingLastPathComponent()
            if parent.path == directory.path { break }
            directory = parent
        }
        throw HarnessError(
            .notFound,
            "built product '\(name)' not found in \(searched.joined(separator: ", ")); run `swift build --product \(name)` first"
        )
    }
}
