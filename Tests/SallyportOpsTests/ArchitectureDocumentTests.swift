import Foundation
import Testing

/// docs/architecture.md walks a request file by file and lists the modules: it is checked against the tree, so
/// a file moved or renamed cannot leave the walk pointing at nothing.
@Suite struct ArchitectureDocumentTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized

    static func document() throws -> String {
        try String(contentsOf: root.appendingPathComponent("docs/architecture.md"), encoding: .utf8)
    }

    /// Every file under Sources, as paths relative to Sources.
    static func sourceFiles() throws -> [String] {
        let sources = root.appendingPathComponent("Sources").path
        let enumerator = try #require(FileManager.default.enumerator(atPath: sources))
        return enumerator.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") || $0.hasSuffix(".c") || $0.hasSuffix(".h") }
    }

    /// Every backquoted name ending in `.swift` the document gives (`Edge/PublicListener.swift`,
    /// `SallyportOps/Listener.swift`, `AppTable.swift`).
    static func namedFiles(in text: String) -> [String] {
        text.split(separator: "`", omittingEmptySubsequences: false).enumerated()
            .filter { $0.offset % 2 == 1 && $0.element.hasSuffix(".swift") && !$0.element.contains(" ") }
            .map { String($0.element) }
    }

    @Test func everyFileTheWalkNamesExistsOnce() throws {
        let files = try Self.sourceFiles()
        let named = Self.namedFiles(in: try Self.document())
        #expect(named.count > 40, "the walk names \(named.count) files")
        for name in Set(named) {
            let matches = files.filter { $0 == name || $0.hasSuffix("/" + name) }
            #expect(matches.count == 1, "docs/architecture.md names \(name): \(matches.isEmpty ? "no such file under Sources" : "ambiguous: \(matches)")")
        }
    }

    @Test func everyModuleIsInTheModulesTable() throws {
        let text = try Self.document()
        let table = try #require(text.range(of: "## Modules")).upperBound
        let rows = text[table...].split(separator: "\n").filter { $0.hasPrefix("| `") }
        let listed = Set(rows.flatMap { $0.split(separator: "|").first.map { cell in
            cell.split(separator: "`").enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
        } ?? [] })
        let modules = try FileManager.default.contentsOfDirectory(atPath: Self.root.appendingPathComponent("Sources").path)
        for module in modules where !module.hasPrefix(".") {
            #expect(listed.contains(module), "docs/architecture.md's module table has no row for Sources/\(module)")
        }
    }
}
