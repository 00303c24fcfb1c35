public import SallyportPluginAPI

/// A built-in handler that can decide without waiting (no I/O, no blocking call): the connector calls these
/// on the request's event loop, and the asynchronous calls only when these return nil. Plugins do not see it:
/// their calls always suspend (a host process, a deadline).
public protocol ImmediateSSOHandler: SSOHandler {
    /// ``SSOHandler/prepare(_:identity:attempt:)`` when it needs no waiting; nil otherwise.
    func prepareImmediately(_ request: inout BackendRequest, identity: Identity?, attempt: Int) -> RequestDecision?
    /// ``SSOHandler/inspect(_:request:identity:attempt:)`` when it needs no waiting; nil otherwise.
    func inspectImmediately(_ response: inout BackendResponse, request: BackendRequest, identity: Identity?, attempt: Int) -> ResponseDecision?
}

extension ImmediateSSOHandler {
    public func inspectImmediately(_ response: inout BackendResponse, request: BackendRequest, identity: Identity?, attempt: Int) -> ResponseDecision? {
        .deliver
    }
}
