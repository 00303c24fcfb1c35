import Foundation
import HTTPTypes
import SallyportHTTP

/// The relay's authentication pages.
enum Pages {
    static let signInUnavailable = ErrorPage(
        status: .serviceUnavailable,
        title: "Sign-in unavailable",
        detail: "The identity provider cannot be reached right now. Try again in a few minutes; if it persists, contact your administrator."
    )

    /// Text for an RFC 9110 quoted-string: no `"` or `\` to end or escape it early (control characters are
    /// escaped already: the description comes through ``LogText``).
    static func quotable(_ text: String) -> String {
        text.replacingOccurrences(of: "\"", with: "'").replacingOccurrences(of: "\\", with: "/")
    }

    static func unauthorized(realm: String, error: String?) -> ErrorPage {
        var challenge = "Bearer realm=\"\(realm.replacingOccurrences(of: "\"", with: ""))\""
        if let error { challenge += ", error=\"invalid_token\", error_description=\"\(Self.quotable(error))\"" }
        var fields = HTTPFields()
        fields[.wwwAuthenticate] = challenge
        return ErrorPage(
            status: .unauthorized,
            title: "Sign-in required",
            detail: error.map { "The credentials sent were not accepted: \($0)." } ?? "This application requires you to sign in.",
            headerFields: fields
        )
    }

    static func forbidden(user: String) -> ErrorPage {
        ErrorPage(
            status: .forbidden,
            title: "Access denied",
            detail: "You are signed in as \(user), who is not allowed to use this application. Ask your administrator for access."
        )
    }
}
