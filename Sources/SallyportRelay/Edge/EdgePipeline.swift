import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import SallyportConfig
import SallyportHTTP

/// The public HTTP/1.1 connection pipeline and its protocol switch.
enum EdgePipeline {

    /// The edge's own handlers of NIOHTTP1 parts: a protocol switch removes them with the codec.
    static var http1Handlers: [any RemovableChannelHandler.Type] { [EdgeProtocolErrorHandler.self, AbsoluteFormRewriter.self] }

    /// TLS is already in place; adds HTTP/1.1 with the edge's limits and timeouts (the caller adds the handler of requests).
    static func configureHTTP1(_ channel: any Channel, limits: EdgeLimits) throws {
        let sync = channel.pipeline.syncOperations
        let timeouts = EdgeTimeoutHandler(headerReadTimeout: TimeAmount(limits.headerReadTimeout), idleTimeout: TimeAmount(limits.idleTimeout))
        try sync.addHandler(timeouts.byteObserver)
        var decoderLimits = NIOHTTPDecoderLimitConfiguration()
        decoderLimits.maxHeaderListSize = limits.maxHeaderBytes
        decoderLimits.maxHeaderFieldSize = limits.maxHeaderBytes
        decoderLimits.maxHeaderFieldCount = limits.maxHeaderCount
        // An (empty) upgrade configuration makes the decoder hand over bytes that follow an upgrade request.
        try sync.configureHTTPServerPipeline(
            withPipeliningAssistance: false,
            withServerUpgrade: (upgraders: [], completionHandler: { _ in }),
            withErrorHandling: false,
            withOutboundHeaderValidation: true,
            withEncoderConfiguration: .init(),
            withDecoderLimitConfiguration: decoderLimits
        )
        // 431 for heads over the limits, 400 for other malformed requests.
        try sync.addHandler(EdgeProtocolErrorHandler())
        try sync.addHandler(AbsoluteFormRewriter())
        try sync.addHandler(HTTP1ToHTTPServerCodec(secure: true, splitCookie: false))
        try sync.addHandler(RequestFlowGuard(limits))
        try sync.addHandler(timeouts)
    }
}
