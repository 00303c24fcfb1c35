import HTTPTypes
import Logging
import SallyportHTTP
import SallyportPluginAPI
import SallyportTunnel
import SallyportWire

/// The SSO step's two calls in one backend exchange, as the forwarder and the exchange I/O make them: before a
/// send, ``SSOStep/prepare(_:identity:attempt:exchange:upgrade:logger:)`` turns the handler's decision into a
/// request to send (or a page for the user); after it, the ``ResponseInspector`` it handed out turns the
/// handler's look at the response head into a decision on it. Both keep the handler's deadline and say in the
/// log what went wrong.
extension SSOStep {
    /// A request the SSO handler let go: what to send, the connection binding it asks for, and who inspects
    /// the answer.
    struct Prepared {
        var request: HTTPRequest
        var affinity: String? = nil
        var inspector: ResponseInspector? = nil
    }

    enum Preparation {
        case ready(Prepared)
        case refused(ErrorPage, reason: ConnectorErrorReason)
    }

    /// The handler's step before a send.
    func prepare(
        _ request: HTTPRequest, identity: Identity?, attempt: Int, exchange: BackendExchange, upgrade: String?, logger: Logger
    ) async -> Preparation {
        let offered = PluginRequest.make(request, hasBody: exchange.hasBody, canRetry: exchange.retryPossible)
        let called = await self.prepare(offered, identity: identity, attempt: attempt)
        return self.conclude(called, offered: offered, request, identity: identity, attempt: attempt, exchange: exchange, upgrade: upgrade, logger: logger)
    }

    /// ``prepare(_:identity:attempt:exchange:upgrade:logger:)`` when the handler decides without waiting; nil
    /// when it must wait.
    func prepareImmediately(
        _ request: HTTPRequest, identity: Identity?, attempt: Int, exchange: BackendExchange, upgrade: String?, logger: Logger
    ) -> Preparation? {
        let offered = PluginRequest.make(request, hasBody: exchange.hasBody, canRetry: exchange.retryPossible)
        guard let called = self.prepareImmediately(offered, identity: identity, attempt: attempt) else { return nil }
        return self.conclude(called, offered: offered, request, identity: identity, attempt: attempt, exchange: exchange, upgrade: upgrade, logger: logger)
    }

    /// What the handler's decision (nil: past its deadline) means for the send.
    private func conclude(
        _ called: (RequestDecision, BackendRequest)?, offered: BackendRequest, _ request: HTTPRequest, identity: Identity?, attempt: Int,
        exchange: BackendExchange, upgrade: String?, logger: Logger
    ) -> Preparation {
        guard let (decision, pluginRequest) = called else {
            logger.warning(
                "the SSO handler did not decide in time; the request gets 504",
                metadata: ["handler": "\(self.name)", "call": "prepare", "timeout": "\(self.deadline ?? .zero)"]
            )
            return .refused(.gatewayTimeout, reason: .ssoTimeout)
        }
        switch decision {
        case .refuse(let refusal):
            logger.warning("the SSO handler refused the request", metadata: ["handler": "\(self.name)", "status": "\(refusal.status)", "reason": "\(refusal.reason)"])
            return .refused(SSOPages.page(for: refusal), reason: .ssoRefused)
        case .proceed:
            break
        }
        guard var changed = PluginRequest.apply(pluginRequest, to: request) else {
            logger.error("the SSO handler produced a request HTTP cannot carry (bad method, path or header)", metadata: ["handler": "\(self.name)"])
            return .refused(SSOPages.unavailable, reason: .ssoBadRequest)
        }
        if let upgrade {
            changed.headerFields[.connection] = "Upgrade"
            changed.headerFields[.upgrade] = upgrade
        }
        var sent = pluginRequest
        (sent.hasBody, sent.canRetry) = (offered.hasBody, offered.canRetry)
        let inspector = ResponseInspector(
            step: self, sent: sent, identity: identity, attempt: attempt, retryImpossibility: exchange.retryImpossibility, logger: logger
        )
        return .ready(Prepared(request: changed, affinity: pluginRequest.connectionAffinity, inspector: inspector))
    }
}

/// The SSO handler's look at one attempt's response head: its decision, and the head as it rewrote it.
struct ResponseInspector: Sendable {
    let step: SSOStep
    /// The request as the handler let it go (what it is told was sent).
    let sent: BackendRequest
    let identity: Identity?
    let attempt: Int
    /// Why a `.retry` cannot be honoured for this attempt; nil when it can.
    let retryImpossibility: String?
    let logger: Logger

    /// `.retry` only when a retry is possible (else the response is delivered); a handler past its deadline
    /// refuses with ``SSOPages/handlerTimedOut``.
    func inspect(_ response: HTTPResponse) async -> (ResponseDecision, HTTPResponse) {
        let seen = PluginRequest.response(response)
        let called = await self.step.inspect(seen, request: self.sent, identity: self.identity, attempt: self.attempt)
        return self.conclude(called, seen: seen, response)
    }

    /// ``inspect(_:)`` when the handler decides without waiting; nil when it must wait.
    func inspectImmediately(_ response: HTTPResponse) -> (ResponseDecision, HTTPResponse)? {
        let seen = PluginRequest.response(response)
        guard let called = self.step.inspectImmediately(seen, request: self.sent, identity: self.identity, attempt: self.attempt) else { return nil }
        return self.conclude(called, seen: seen, response)
    }

    /// What the handler's decision (nil: past its deadline) means for the response.
    private func conclude(_ called: (ResponseDecision, BackendResponse)?, seen: BackendResponse, _ response: HTTPResponse) -> (ResponseDecision, HTTPResponse) {
        guard let (decision, rewritten) = called else {
            self.logger.warning(
                "the SSO handler did not decide in time; the request gets 504",
                metadata: ["handler": "\(self.step.name)", "call": "inspect", "timeout": "\(self.step.deadline ?? .zero)"]
            )
            return (.refuse(SSOPages.handlerTimedOut), response)
        }
        var head = response
        if rewritten.headers != seen.headers {
            guard let applied = PluginRequest.apply(rewritten, to: response) else {
                self.logger.error("the SSO handler set a response header HTTP cannot carry", metadata: ["handler": "\(self.step.name)"])
                return (.refuse(Refusal(status: 502, message: SSOPages.unavailable.detail, reason: "bad response header from the handler")), response)
            }
            head = applied
        }
        if decision == .retry, let why = self.retryImpossibility {
            self.logger.warning(
                "the SSO handler asked to send the request again, which cannot be done; the response is delivered",
                metadata: ["handler": "\(self.step.name)", "why": "\(why)"]
            )
            return (.deliver, head)
        }
        return (decision, head)
    }
}

/// What the user sees when single sign-on is what failed.
enum SSOPages {
    /// What an inspector returns when the handler missed its deadline (answered 504, "sso-timeout").
    static let handlerTimedOut = Refusal(status: 504, message: "", reason: ConnectorErrorReason.ssoTimeout.rawValue)

    /// The app's SSO handler cannot run on this connector.
    static let unavailable = ErrorPage(
        status: .badGateway,
        title: "Sign-in unavailable",
        detail: "Single sign-on to this application is not working right now. Contact your administrator."
    )

    /// The page for a handler's refusal: its status (3xx for redirects, 4xx, 5xx; anything else is 502),
    /// message and extra fields (those HTTP or Sallyport reserve are dropped).
    static func page(for refusal: Refusal) -> ErrorPage {
        let status = (300...599).contains(refusal.status) ? HTTPResponse.Status(code: refusal.status) : .badGateway
        var fields = HTTPFields()
        for field in refusal.headers {
            guard let name = HTTPField.Name(field.name), HTTPField.isValidValue(field.value) else { continue }
            fields.append(HTTPField(name: name, value: field.value))
        }
        HopByHop.strip(&fields)
        TunnelProtocol.removeReserved(&fields)
        for name in [HTTPField.Name.contentLength, .contentType, .setCookie] { fields[values: name] = [] }
        return ErrorPage(status: status, title: status.reasonPhrase.isEmpty ? "Refused" : status.reasonPhrase, detail: refusal.message, headerFields: fields)
    }
}
