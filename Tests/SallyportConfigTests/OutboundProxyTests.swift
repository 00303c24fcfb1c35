import Foundation
import SallyportConfig
import Testing

/// The connector's `proxy` key and the `HTTPS_PROXY`/`NO_PROXY` conventions.
@Suite("Outbound proxy settings")
struct OutboundProxySettingsTests {
    @Test("Proxy URLs: user and password (percent-encoded), default port 3128, a bare host:port; never the password in the description")
    func parsing() throws {
        let full = try OutboundProxy.parse("http://svc%40corp:p%3Ass@Proxy.Corp.Example:8080").get()
        #expect(full.host == "proxy.corp.example" && full.port == 8080 && full.username == "svc@corp" && full.password == "p:ss")
        #expect("\(full)" == "http://svc@corp@proxy.corp.example:8080" && !"\(full)".contains("p:ss"))
        #expect(full.authorization == "Basic " + Data("svc@corp:p:ss".utf8).base64EncodedString())
        let bare = try OutboundProxy.parse("proxy.example:3129").get()
        #expect(bare.port == 3129 && bare.username == nil && bare.authorization == nil)
        #expect(try OutboundProxy.parse("http://proxy.example").get().port == 3128)
        #expect(try OutboundProxy.parse("http://[::1]:3128").get().host == "::1")
    }

    @Test("Bad proxy URLs say what is wrong")
    func badURLs() {
        func problem(_ text: String) -> String? {
            if case .failure(let problem) = OutboundProxy.parse(text) { return problem.message }
            return nil
        }
        #expect(problem("https://proxy.example:3128")?.contains("must be an http:// proxy URL") == true)
        #expect(problem("http://proxy.example:3128/path")?.contains("must not have a path") == true)
        #expect(problem("http://proxy.example:3128/?a=1")?.contains("query") == true)
        #expect(problem("http://:3128")?.contains("has no host") == true)
    }

    @Test("HTTPS_PROXY, then https_proxy and ALL_PROXY; NO_PROXY by host, domain, .domain, *.domain or *; a bad value names its variable")
    func environment() throws {
        func proxy(_ environment: [String: String], _ target: String = "relay.example.com") throws -> OutboundProxy? {
            try OutboundProxy.fromEnvironment(environment, target: target).get()
        }
        #expect(try proxy([:]) == nil)
        #expect(try proxy(["HTTPS_PROXY": "http://a:1", "ALL_PROXY": "http://b:2"])?.host == "a")
        #expect(try proxy(["https_proxy": "http://c:3"])?.source == "https_proxy")
        #expect(try proxy(["ALL_PROXY": "http://b:2"])?.host == "b")
        for list in ["relay.example.com", "example.com", ".example.com", "*.example.com", "other, example.com:8443", "*"] {
            #expect(try proxy(["HTTPS_PROXY": "http://a:1", "NO_PROXY": list]) == nil, "\(list)")
        }
        for list in ["ample.com", "relay.example.org", "sub.relay.example.com"] {
            #expect(try proxy(["HTTPS_PROXY": "http://a:1", "no_proxy": list]) != nil, "\(list)")
        }
        guard case .failure(let problem) = OutboundProxy.fromEnvironment(["HTTPS_PROXY": "socks5://x:1"], target: "relay.example.com") else {
            Issue.record("a socks5 URL must be refused")
            return
        }
        #expect(problem.message.hasPrefix("HTTPS_PROXY: must be an http:// proxy URL"), "\(problem.message)")
    }

    @Test("The proxy key: a URL, none (ignores the environment), or an error at the key")
    func configKey() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let base = "relay: relay.example.com:8443\ncertificate: c.pem\nkey: c.key\n"
        let set = try ConfigLoader.loadConnector(file: try directory.write("set.yaml", base + "proxy: http://p.example:3128\n"))
        #expect(try set.proxy.resolve(environment: ["HTTPS_PROXY": "http://other:1"], target: "relay.example.com").get()?.host == "p.example")
        let none = try ConfigLoader.loadConnector(file: try directory.write("none.yaml", base + "proxy: none\n"))
        #expect(try none.proxy.resolve(environment: ["HTTPS_PROXY": "http://other:1"], target: "relay.example.com").get() == nil)
        let unset = try ConfigLoader.loadConnector(file: try directory.write("unset.yaml", base))
        #expect(try unset.proxy.resolve(environment: ["HTTPS_PROXY": "http://other:1"], target: "relay.example.com").get()?.host == "other")
        let bad = try directory.write("bad.yaml", base + "proxy: ftp://p.example\n")
        do throws(ConfigError) {
            _ = try ConfigLoader.loadConnector(file: bad)
            Issue.record("ftp:// must be refused")
        } catch {
            #expect(error.key == "proxy" && error.line == 4 && error.message.contains("must be an http:// proxy URL"), "\(error)")
        }
    }
}
