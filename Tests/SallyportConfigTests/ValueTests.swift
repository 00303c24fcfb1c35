import Foundation
import SallyportConfig
import Testing

@Suite("Durations")
struct DurationTests {
    private func connectTimeout(_ value: String) throws -> Duration {
        try ConfigLoader.parseApp(yaml: minimalApp + "timeouts:\n  connect: \(value)\n", file: "a.yaml").timeouts.connect
    }

    @Test(arguments: [
        ("500ms", Duration.milliseconds(500)),
        ("30s", .seconds(30)),
        ("2m", .seconds(120)),
        ("1h", .seconds(3600)),
        ("10d", .seconds(864_000)),
        ("45", .seconds(45)),
        ("\"45\"", .seconds(45)),
        ("'10s'", .seconds(10)),
    ])
    func validDurations(text: String, expected: Duration) throws {
        #expect(try connectTimeout(text) == expected)
    }

    @Test(arguments: [
        ("soon", #"must be a duration like "30s", "2m" or "500ms" (got "soon")"#),
        ("1.5s", #"must be a duration like "30s", "2m" or "500ms" (got "1.5s")"#),
        ("5 s", #"must be a duration like "30s", "2m" or "500ms" (got "5 s")"#),
        ("10w", #"must be a duration like "30s", "2m" or "500ms" (got "10w")"#),
        ("1.5", #"must be a duration like "30s", "2m" or "500ms" (got the number 1.5)"#),
        ("[5s]", #"must be a duration like "30s", "2m" or "500ms" (got a list)"#),
        ("\"\"", #"must be a duration like "30s", "2m" or "500ms" (got "")"#),
        ("-5s", #"must not be negative (got "-5s")"#),
        ("-5", #"must not be negative (got "-5")"#),
        ("0s", #"must be longer than zero (got "0s")"#),
        ("0", #"must be longer than zero (got "0")"#),
        ("99999999999999h", #"is too long (got "99999999999999h")"#),
    ])
    func invalidDurations(text: String, message: String) throws {
        let error = try #require(appError(minimalApp + "timeouts:\n  connect: \(text)\n"))
        #expect(error == ConfigError(file: "apps/wiki.yaml", line: 7, column: 3, key: "timeouts.connect", message: message))
    }
}

@Suite("URLs")
struct URLTests {
    @Test func externalURLIsNormalised() throws {
        let plain = try ExternalURL(parsing: "https://Wiki.Apps.Example.COM")
        #expect(plain.host == "wiki.apps.example.com")
        #expect(plain.port == nil)
        #expect(plain.pathPrefix == "/")
        #expect(plain.string == "https://wiki.apps.example.com/")

        let prefixed = try ExternalURL(parsing: "HTTPS://apps.example.com/payroll")
        #expect(prefixed.pathPrefix == "/payroll/")
        #expect(prefixed.string == "https://apps.example.com/payroll/")

        let deep = try ExternalURL(parsing: "https://apps.example.com:8443/hr/payroll/")
        #expect(deep.port == 8443)
        #expect(deep.pathPrefix == "/hr/payroll/")
        #expect(deep.string == "https://apps.example.com:8443/hr/payroll/")

        let defaultPort = try ExternalURL(parsing: "https://apps.example.com:443/x")
        #expect(defaultPort.port == nil)
        #expect(defaultPort.string == "https://apps.example.com/x/")
        #expect(defaultPort == (try ExternalURL(parsing: "https://apps.example.com/x/")))
    }

    @Test func internalURLGetsDefaultPorts() throws {
        let http = try InternalURL(parsing: "http://Backend.Corp.Internal")
        #expect(http.scheme == "http")
        #expect(http.host == "backend.corp.internal")
        #expect(http.port == 80)
        #expect(http.path == "/")
        #expect(http.string == "http://backend.corp.internal/")

        let https = try InternalURL(parsing: "https://backend.corp.internal/app")
        #expect(https.port == 443)
        #expect(https.path == "/app/")
        #expect(https.string == "https://backend.corp.internal/app/")

        let explicit = try InternalURL(parsing: "http://10.0.0.5:8080/a/b")
        #expect(explicit.host == "10.0.0.5")
        #expect(explicit.port == 8080)
        #expect(explicit.string == "http://10.0.0.5:8080/a/b/")

        let ipv6 = try InternalURL(parsing: "http://[FD00::1]:9000")
        #expect(ipv6.host == "fd00::1")
        #expect(ipv6.string == "http://[fd00::1]:9000/")
    }

    @Test(arguments: [
        ("http://wiki.apps.example.com/", "must use https:// (the relay serves only HTTPS)"),
        ("ftp://wiki.apps.example.com/", "must be an https:// URL"),
        ("wiki.apps.example.com", "must be an absolute URL like https://wiki.example.com/"),
        ("https://wiki.apps.example.com/?a=b", #"must not contain a query ("?...")"#),
        ("https://wiki.apps.example.com/#top", ##"must not contain a fragment ("#...")"##),
        ("https://user:pw@wiki.apps.example.com/", #"must not contain a user name or password ("user@")"#),
        ("https://wiki..example.com/", #""wiki..example.com" is not a valid host name or IP address"#),
        ("https:///path", "the host is missing"),
        ("https://wiki.apps.example.com:0/", #"has an invalid port "0" (expected 1 to 65535)"#),
        ("https://wiki.apps.example.com:70000/", #"has an invalid port "70000" (expected 1 to 65535)"#),
        ("https://wiki.apps.example.com//x/", #"must not contain an empty path segment ("//")"#),
        ("https://wiki.apps.example.com/a/../b/", #"must not contain "." or ".." path segments"#),
        ("https://wiki.apps.example.com/a b/", "must not contain spaces or control characters"),
        ("https://wiki.apps.example.com/%zz/", #"has a "%" in the path that is not followed by two hex digits"#),
    ])
    func externalURLErrorsNameTheKey(url: String, message: String) throws {
        let yaml = minimalApp.replacingOccurrences(of: "https://wiki.apps.example.com/", with: url)
        let error = try #require(appError(yaml))
        #expect(error.line == 2)
        #expect(error.column == 1)
        #expect(error.key == "externalURL")
        #expect(error.message.hasPrefix(message))
        #expect(error.message.hasSuffix("(got \"\(url)\")"))
    }

    @Test(arguments: [
        ("ftp://backend/", "must be an http:// or https:// URL"),
        ("http://backend/?debug=1", #"must not contain a query ("?...")"#),
        ("http://::1:8080/", #"has more than one ":" in the host; put an IPv6 address in brackets"#),
        ("http://[::1/", #"has an IPv6 address without its closing "]""#),
        ("http://backend:http/", #"has an invalid port "http" (expected 1 to 65535)"#),
    ])
    func internalURLErrorsNameTheKey(url: String, message: String) throws {
        let yaml = minimalApp.replacingOccurrences(of: "http://wiki.corp.internal:8080/", with: url)
        let error = try #require(appError(yaml))
        #expect(error.line == 3)
        #expect(error.key == "internalURL")
        #expect(error.message.hasPrefix(message))
    }
}

@Suite("host:port addresses")
struct HostPortTests {
    @Test(arguments: [
        ("0.0.0.0:443", "0.0.0.0", 443),
        ("[::1]:8443", "::1", 8443),
        ("relay.example.com:8443", "relay.example.com", 8443),
        ("Relay.Example.COM:1", "relay.example.com", 1),
    ])
    func parses(text: String, host: String, port: Int) throws {
        let address = try HostPort(parsing: text)
        #expect(address == HostPort(host: host, port: port))
    }

    @Test func descriptionBracketsIPv6() {
        #expect(HostPort(host: "::1", port: 8443).description == "[::1]:8443")
        #expect(HostPort(host: "relay.example.com", port: 8443).description == "relay.example.com:8443")
    }

    @Test func zeroPortOnlyWhenAllowed() throws {
        #expect(try HostPort(parsing: "127.0.0.1:0", allowZeroPort: true) == HostPort(host: "127.0.0.1", port: 0))
        #expect(throws: ConfigError(file: "<input>", message: #"has an invalid port "0" (expected 1 to 65535)"#)) {
            try HostPort(parsing: "127.0.0.1:0")
        }
    }

    @Test(arguments: ["relay.example.com", ":8443", "::1:8443", "relay.example.com:", "[::1]8443", "bad host:1", "relay:99999"])
    func rejects(text: String) {
        #expect(throws: ConfigError.self) { try HostPort(parsing: text) }
    }
}
