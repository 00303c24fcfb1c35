public import HTTPTypes
public import NIOCore

/// The short pages Sallyport answers with when it, not the backend, ends a request.
///
/// Pages never name internal hosts, connectors or apps beyond what the user asked for. The request id
/// lets an operator find the matching log line.
public struct ErrorPage: Sendable {
    /// The HTTP status.
    public var status: HTTPResponse.Status
    /// One-line title, e.g. "App unavailable".
    public var title: String
    /// A sentence for the user: what happened and what to do.
    public var detail: String
    /// Extra response fields: `Location`, `Set-Cookie`, `WWW-Authenticate`.
    public var headerFields: HTTPFields
    /// A button that POSTs to a path on the same host (e.g. "Sign out").
    public var action: Action?

    /// A same-host POST button on a page.
    public struct Action: Sendable {
        /// The button's text.
        public var label: String
        /// The path it posts to.
        public var path: String

        /// Creates an action.
        public init(label: String, path: String) {
            self.label = label
            self.path = path
        }
    }

    /// Creates a page.
    public init(status: HTTPResponse.Status, title: String, detail: String, headerFields: HTTPFields = [:], action: Action? = nil) {
        self.status = status
        self.title = title
        self.detail = detail
        self.headerFields = headerFields
        self.action = action
    }

    /// No app is published at this address.
    public static let notFound = ErrorPage(
        status: .notFound,
        title: "Not found",
        detail: "No application is published at this address. Check the link you followed."
    )
    /// The app exists but no connector of its group is connected.
    public static let noConnector = ErrorPage(
        status: .serviceUnavailable,
        title: "Application unavailable",
        detail: "The application is published, but it cannot be reached right now. Try again in a minute; if it persists, contact your administrator."
    )
    /// The backend refused or reset the connection.
    public static let badGateway = ErrorPage(
        status: .badGateway,
        title: "Bad gateway",
        detail: "The application did not answer correctly. Try again; if it persists, contact your administrator."
    )
    /// The backend did not answer in time.
    public static let gatewayTimeout = ErrorPage(
        status: .gatewayTimeout,
        title: "Gateway timeout",
        detail: "The application took too long to answer. Try again; if it persists, contact your administrator."
    )
    /// The request was malformed or exceeded a limit.
    public static func badRequest(_ detail: String, status: HTTPResponse.Status = .badRequest) -> ErrorPage {
        ErrorPage(status: status, title: status.reasonPhrase, detail: detail)
    }

    /// The response head and body for this page.
    public func render(requestID: String, allocator: ByteBufferAllocator, close: Bool = false) -> (HTTPResponse, ByteBuffer) {
        let html = """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><title>\(status.code) \(Self.escape(title))</title>
            <style>body{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;color:#222}small{color:#777}</style>
            </head><body><h1>\(Self.escape(title))</h1><p>\(Self.escape(detail))</p>\(actionHTML)
            <p><small>\(status.code) · request \(Self.escape(requestID)) · Sallyport</small></p></body></html>

            """
        var buffer = allocator.buffer(capacity: html.utf8.count)
        buffer.writeString(html)
        var fields = self.headerFields
        fields[.contentType] = "text/html; charset=utf-8"
        fields[.contentLength] = String(buffer.readableBytes)
        fields[.cacheControl] = "no-store"
        fields[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        if close { fields[.connection] = "close" }
        return (HTTPResponse(status: status, headerFields: fields), buffer)
    }

    private var actionHTML: String {
        guard let action else { return "" }
        return "<form method=\"post\" action=\"\(Self.escape(action.path))\"><button type=\"submit\">\(Self.escape(action.label))</button></form>"
    }

    static func escape(_ text: String) -> String { HTML.escaped(text) }
}

/// Text for HTML pages.
public enum HTML {
    /// `text` safe inside HTML text and attribute values.
    public static func escaped(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }
}
