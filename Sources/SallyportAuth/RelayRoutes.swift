import Foundation
public import HTTPTypes
public import Logging
public import SallyportHTTP

/// The relay's own paths under `/.sallyport/` on every published host: health, the sign-in callback and
/// sign-out. They never reach an app.
extension PreAuthenticator {
    /// Answers a request under `RelayNamespace.pathPrefix`. `providers` are those of the apps on this host.
    public func handleReserved(_ request: HTTPRequest, authority: String, providers: Set<String>, logger: Logger) async -> ErrorPage {
        let path = request.path ?? "/"
        let route = path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? path
        switch route {
        case Self.callbackPath where request.method == .get:
            let page = await self.callback(request, authority: authority, providers: providers, logger: logger)
            if page.status.kind == .clientError { logger.info("sign-in response refused", metadata: ["status": "\(page.status.code)", "reason": "\(page.detail)"]) }
            return page
        case Self.signOutPath where request.method == .get:
            // A link (or a page on another site) cannot sign the user out: only this page's button can.
            return ErrorPage(
                status: .ok, title: "Sign out", detail: "Sign out of the applications at this address?",
                action: ErrorPage.Action(label: "Sign out", path: Self.signOutPath)
            )
        case Self.signOutPath where request.method == .post:
            guard Self.isSameOrigin(request, authority: authority) else {
                logger.info("cross-site sign-out refused")
                return .badRequest("Sign-out must come from this site's own sign-out page.", status: .forbidden)
            }
            var fields = HTTPFields()
            for provider in providers.sorted() where self.providers.oidc[provider] != nil {
                for cookie in Cookies.clearChunked(Self.sessionCookie(provider)) { fields.append(HTTPField(name: .setCookie, value: cookie)) }
            }
            logger.info("user signed out")
            return ErrorPage(status: .ok, title: "Signed out", detail: "You are signed out of the applications at this address.", headerFields: fields)
        default:
            return .notFound
        }
    }

    /// A POST from a page of this host: `Sec-Fetch-Site: same-origin`, or an `Origin` of this host.
    static func isSameOrigin(_ request: HTTPRequest, authority: String) -> Bool {
        if let site = request.headerFields[HTTPField.Name("Sec-Fetch-Site")!] { return site == "same-origin" }
        guard let origin = request.headerFields[HTTPField.Name("Origin")!] else { return false }
        return origin.lowercased() == "https://\(authority.lowercased())"
    }
}
