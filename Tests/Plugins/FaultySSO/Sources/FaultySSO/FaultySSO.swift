#if canImport(Glibc)
import Glibc
#endif
import SallyportPluginAPI

/// `faulty`: sets `X-Faulty: <app>` and counts requests, unless the path says otherwise:
/// `/crash` stops the process (fatalError), `/slow-crash` reports a fatal error and ends 4 s later, `/hang` never answers, `/block` blocks its thread for 30 s.
///
/// ```yaml
/// sso:
///   handler: faulty
///   label: shop            # required text
///   limits: {tries: 2}     # optional mapping: tries (whole number), ratio (number)
///   modes: [fast]          # optional list of fast, slow
///   needsFile: /path       # optional: the factory fails while this file does not exist
/// ```
public struct FaultySettings: Decodable, Sendable {
    public struct Limits: Decodable, Sendable {
        public var tries: Int
        public var ratio: Double?
    }
    public enum Mode: String, Decodable, Sendable, CaseIterable { case fast, slow }
    public var label: String
    public var limits: Limits?
    public var modes: [Mode]?
    public var needsFile: String?
}

public struct FaultyFactory: SSOHandlerFactory {
    public let name = "faulty"
    public let requiresIdentity = false
    public init() {}

    public func makeHandler(context: HandlerContext) throws -> any SSOHandler {
        let settings = try context.decodeSettings(FaultySettings.self)
        if let file = settings.needsFile, access(file, R_OK) != 0 {
            throw SettingsError(key: "needsFile", message: "\(file) does not exist yet")
        }
        context.logger.info("faulty handler ready", ["label": settings.label])
        return FaultyHandler(label: settings.label, app: context.appName, logger: context.logger, metrics: context.metrics)
    }
}

struct FaultyHandler: SSOHandler {
    let label: String
    let app: String
    let logger: PluginLogger
    let metrics: PluginMetrics

    func prepare(_ request: inout BackendRequest, identity: Identity?, attempt: Int) async -> RequestDecision {
        if request.path.hasPrefix("/crash") { fatalError("faulty plugin told to crash") }
        if request.path.hasPrefix("/slow-crash") {
            // A crash whose report takes a while before the process ends (as the backtracer's on a busy machine).
            let report = "Fatal error: faulty plugin crashing slowly\n"
            _ = report.withCString { write(2, $0, strlen($0)) }
            sleep(4)
            fatalError("faulty plugin crashed slowly")
        }
        if request.path.hasPrefix("/hang") { await withCheckedContinuation { (_: CheckedContinuation<Void, Never>) in } }
        if request.path.hasPrefix("/block") { sleep(30) }
        request.headers.set("X-Faulty", self.label)
        self.metrics.increment("faulty_requests", dimensions: ["outcome": "passed"])
        self.logger.debug("faulty passed a request", ["path": request.path])
        return .proceed
    }
}

/// `retry-always`: asks for every response to be sent again, so the connector must say when it cannot.
public struct RetryFactory: SSOHandlerFactory {
    public let name = "retry-always"
    public let requiresIdentity = false
    public let maximumAttempts = 3
    public init() {}
    public func makeHandler(context: HandlerContext) throws -> any SSOHandler { RetryHandler(logger: context.logger) }
}

struct RetryHandler: SSOHandler {
    let logger: PluginLogger
    func prepare(_ request: inout BackendRequest, identity: Identity?, attempt: Int) async -> RequestDecision {
        request.headers.set("X-Attempt", "\(attempt)")
        request.headers.set("X-Can-Retry", "\(request.canRetry)")
        return .proceed
    }
    func inspect(_ response: inout BackendResponse, request: BackendRequest, identity: Identity?, attempt: Int) async -> ResponseDecision {
        response.headers.set("X-Seen-By", "retry-always")
        return attempt < 2 ? .retry : .deliver
    }
}

@_cdecl("sallyport_plugin_abi")
public func sallyportPluginABI() -> Int64 { PluginABI.stamp }

@_cdecl("sallyport_plugin_entry")
public func sallyportPluginEntry() -> UnsafeMutableRawPointer {
    PluginRegistration(name: "faulty", version: "1.0.0", factories: [FaultyFactory(), RetryFactory()]).retainedPointer()
}
