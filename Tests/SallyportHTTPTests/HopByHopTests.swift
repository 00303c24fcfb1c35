import HTTPTypes
import NIOCore
import Testing

@testable import SallyportHTTP

@Suite struct HopByHopTests {
    @Test func removesFixedHopByHopHeaders() {
        var fields = HTTPFields()
        fields[.connection] = "keep-alive"
        fields[HTTPField.Name("Keep-Alive")!] = "timeout=5"
        fields[.transferEncoding] = "chunked"
        fields[.te] = "trailers"
        fields[.upgrade] = "websocket"
        fields[.proxyAuthorization] = "Basic xyz"
        fields[.accept] = "text/html"
        HopByHop.strip(&fields)
        #expect(fields.map(\.name) == [.accept])
    }

    @Test func removesHeadersListedInConnection() {
        var fields = HTTPFields()
        fields[.connection] = "close, X-Secret-Hop ,x-other"
        fields[HTTPField.Name("X-Secret-Hop")!] = "1"
        fields.append(HTTPField(name: HTTPField.Name("x-other")!, value: "2"))
        fields.append(HTTPField(name: HTTPField.Name("X-OTHER")!, value: "3"))
        fields[HTTPField.Name("X-Kept")!] = "yes"
        HopByHop.strip(&fields)
        #expect(fields.count == 1)
        #expect(fields[HTTPField.Name("X-Kept")!] == "yes")
    }

    @Test func connectionTokensAreLowercased() {
        var fields = HTTPFields()
        fields.append(HTTPField(name: .connection, value: "Upgrade, Keep-Alive"))
        fields.append(HTTPField(name: .connection, value: "CLOSE"))
        #expect(HopByHop.connectionTokens(fields) == ["upgrade", "keep-alive", "close"])
    }
}

@Suite struct ErrorPageTests {
    @Test func rendersStatusLengthAndEscapedText() throws {
        let page = ErrorPage(status: .badGateway, title: "Bad <gateway>", detail: "Try \"again\" & again")
        let (head, body) = page.render(requestID: "abc123", allocator: ByteBufferAllocator(), close: true)
        #expect(head.status == .badGateway)
        #expect(head.headerFields[.contentLength] == String(body.readableBytes))
        #expect(head.headerFields[.connection] == "close")
        let text = String(buffer: body)
        #expect(text.contains("Bad &lt;gateway&gt;"))
        #expect(text.contains("Try &quot;again&quot; &amp; again"))
        #expect(text.contains("abc123"))
        #expect(!text.contains("<gateway>"))
    }

    @Test func builtInPagesDoNotLeakInternalNames() {
        for page in [ErrorPage.notFound, .noConnector, .badGateway, .gatewayTimeout] {
            let (_, body) = page.render(requestID: "r", allocator: ByteBufferAllocator())
            let text = String(buffer: body).lowercased()
            #expect(!text.contains("connector group"))
            #expect(!text.contains("127.0.0.1"))
        }
    }
}
