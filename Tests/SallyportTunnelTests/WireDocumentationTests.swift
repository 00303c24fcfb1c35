import Foundation
import SallyportWire
import Testing

/// docs/tunnel-protocol.md's table of `sallyport-error` reasons is the wire's: every reason the connector can
/// send is there, and each one that says the request never reached the backend is one the relay sends again.
@Suite struct WireDocumentationTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized

    /// The rows of the reasons table: reason → its "reached the backend" cell.
    static func documentedReasons() throws -> [String: String] {
        let text = try String(contentsOf: root.appendingPathComponent("docs/tunnel-protocol.md"), encoding: .utf8)
        var rows: [String: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("| `") {
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count == 3, cells[0].hasPrefix("`"), cells[0].hasSuffix("`") else { continue }
            rows[String(cells[0].dropFirst().dropLast())] = cells[2]
        }
        return rows
    }

    @Test func everyConnectorErrorReasonIsDocumentedWithWhetherTheRequestWasSent() throws {
        let rows = try Self.documentedReasons()
        for reason in ConnectorErrorReason.allCases {
            let cell = try #require(rows[reason.rawValue], "docs/tunnel-protocol.md has no row for \(reason.rawValue)")
            if reason.requestNotSent {
                #expect(cell.hasPrefix("no") && cell.contains("sent again"), "\(reason.rawValue): \(cell)")
            } else {
                #expect(!cell.contains("sent again"), "\(reason.rawValue): \(cell)")
            }
        }
        #expect(Set(rows.keys) == Set(ConnectorErrorReason.allCases.map(\.rawValue)))
    }
}
