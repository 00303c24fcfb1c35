import SallyportHTTP
import Testing

/// Paths are routed and forwarded the way backends read them.
@Suite struct RequestPathTests {
    func normalized(_ target: String) -> String? { RequestPath.normalize(target)?.target }

    @Test func dotSegmentsAndSlashRuns() {
        // RFC 3986 §5.2.4 and its examples.
        #expect(normalized("/a/b/c/./../../g") == "/a/g")
        #expect(normalized("/mid/content=5/../6") == "/mid/6")
        #expect(normalized("/app/x/../secret") == "/app/secret")
        #expect(normalized("/app/../secret") == "/secret")
        #expect(normalized("/app/../../../etc/passwd") == "/etc/passwd")
        #expect(normalized("/app//secret") == "/app/secret")
        #expect(normalized("//app///x//") == "/app/x/")
        #expect(normalized("/app/.") == "/app/")
        #expect(normalized("/app/b/..") == "/app/")
        #expect(normalized("/..") == "/")
        #expect(normalized("/") == "/")
        #expect(normalized("/app/") == "/app/")
        #expect(normalized("/app") == "/app")
        // The query is not a path: kept as sent.
        #expect(normalized("/app/./x?next=/../y&a=..") == "/app/x?next=/../y&a=..")
        #expect(normalized("/a?") == "/a?")
        #expect(normalized("*") == nil)
        #expect(normalized("http://evil.example/") == nil)
    }

    @Test func escapesAreReportedNotDecoded() {
        for target in ["/app/%2e%2e/secret", "/app/..%2fsecret", "/app/..%2Fsecret", "/app/%2E%2E/x", "/app/..%5csecret", "/app/..\\secret", "/app/..;/secret", "/app/.;x/y"] {
            let result = RequestPath.normalize(target)
            #expect(result?.hasEscapes == true, "\(target)")
        }
        #expect(RequestPath.normalize("/app/%2e%2e/secret")?.path == "/app/%2e%2e/secret", "never decoded: the app decides")
        for target in ["/app/a%20b", "/app/%41", "/app/x;y=1", "/app/..x/y", "/app/?q=%2f"] {
            #expect(RequestPath.normalize(target)?.hasEscapes == false, "\(target)")
        }
    }
}
