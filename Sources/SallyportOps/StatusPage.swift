public import Foundation
import SallyportHTTP

/// A server-rendered status page: sections of tables, inline styles, no scripts and no external assets,
/// so it works from an air-gapped admin host and under a strict Content-Security-Policy.
public struct StatusPage: Sendable {
    /// A table cell: text, and a tone that colours it.
    public struct Cell: Sendable, ExpressibleByStringLiteral {
        public enum Tone: String, Sendable { case plain, good, warn, bad }
        public var text: String
        public var tone: Tone

        public init(_ text: String, tone: Tone = .plain) {
            self.text = text
            self.tone = tone
        }

        public init(stringLiteral value: String) { self.init(value) }
    }

    /// A titled table; `empty` is shown instead when it has no rows.
    public struct Section: Sendable {
        public var title: String
        public var columns: [String]
        public var rows: [[Cell]]
        public var empty: String

        public init(title: String, columns: [String], rows: [[Cell]], empty: String) {
            self.title = title
            self.columns = columns
            self.rows = rows
            self.empty = empty
        }
    }

    public var title: String
    /// Short facts under the title: version, generation, uptime.
    public var facts: [(String, String)]
    public var sections: [Section]
    /// When the page was made: shown first, so a page left open (or cached) says how old it is.
    public var generated: Date

    public init(title: String, facts: [(String, String)], sections: [Section], generated: Date = Date()) {
        self.title = title
        self.facts = facts
        self.sections = sections
        self.generated = generated
    }

    /// The `Content-Security-Policy` the page is served with: nothing but its own inline styles.
    public static let contentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'"

    /// The page as HTML.
    public func html() -> String {
        var out = """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(Self.escaped(self.title))</title>
            <style>
            body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d2330;background:#f6f7f9}
            h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:28px 0 8px}
            .facts{color:#556;margin:0 0 8px}.facts span{margin-right:18px}
            table{border-collapse:collapse;background:#fff;min-width:60%;box-shadow:0 1px 2px #0001}
            th,td{text-align:left;padding:6px 12px;border-bottom:1px solid #e3e6eb;vertical-align:top}
            th{background:#eef0f4;font-weight:600}
            .good{color:#17733a;font-weight:600}.warn{color:#9a6200;font-weight:600}.bad{color:#b3261e;font-weight:600}
            .empty{color:#667;font-style:italic}
            </style></head><body>
            <h1>\(Self.escaped(self.title))</h1>

            """
        out += "<p class=\"facts\">"
        let generated = self.generated.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: false).timeZone(separator: .omitted))
        for (name, value) in [("as of", generated)] + self.facts { out += "<span>\(Self.escaped(name)): <b>\(Self.escaped(value))</b></span>" }
        out += "</p>\n"
        for section in self.sections {
            out += "<section><h2>\(Self.escaped(section.title))</h2>\n"
            if section.rows.isEmpty {
                out += "<p class=\"empty\">\(Self.escaped(section.empty))</p></section>\n"
                continue
            }
            out += "<table><thead><tr>" + section.columns.map { "<th>\(Self.escaped($0))</th>" }.joined() + "</tr></thead><tbody>\n"
            for row in section.rows {
                out += "<tr>"
                for cell in row {
                    out += cell.tone == .plain ? "<td>" : "<td class=\"\(cell.tone.rawValue)\">"
                    out += Self.escaped(cell.text) + "</td>"
                }
                out += "</tr>\n"
            }
            out += "</tbody></table></section>\n"
        }
        return out + "</body></html>\n"
    }

    static func escaped(_ text: String) -> String { HTML.escaped(text) }
}
