import Foundation
import SallyportTesting
import Testing

extension EndToEnd {
    /// Hostile requests against a real relay and connector in front of nginx, which reports exactly what it
    /// received (`/headers` echoes the request line).
    @Suite("Adversarial requests")
    struct AdversarialTests {
        @Test("Paths are normalised before routing and forwarding: dot segments and slash runs cannot leave an app's prefix; encoded slashes, dots and backslashes are refused unless the app allows them")
        func pathNormalisation() async throws {
            try await EndToEnd.withNginx(hosts: ["app", "raw"]) { deployment, nginx in
                try deployment.writeApp(name: "app", prefix: "/hr/", internalURL: nginx.baseURL + "/")
                try deployment.writeApp(name: "raw", internalURL: nginx.baseURL + "/", extra: "allowEscapedPath: true")
                try await deployment.startRelay()
                try await deployment.startConnector()
                func get(_ host: String, _ path: String, http2: Bool = false) async throws -> Curl.Result {
                    try await Curl.run(deployment.url(host, path), caFile: deployment.caFile, http2: http2, extraArguments: ["--path-as-is"])
                }
                func requestLine(_ result: Curl.Result) -> String { result.body.split(whereSeparator: \.isNewline).first.map(String.init) ?? "" }

                // What the backend acts on is what was routed: inside the prefix, without dot segments.
                for (path, http2) in [("/hr/x/../headers", false), ("/hr/./headers", false), ("/hr//headers", false), ("/hr/x/y/../../headers", true)] {
                    let result = try await get("app", path, http2: http2)
                    #expect(result.status == 200, "\(path): \(result.status) \(result.body.prefix(200))")
                    #expect(requestLine(result) == "GET /headers HTTP/1.1", "\(path) reached the backend as \(requestLine(result))")
                }
                // Out of the prefix: not this app's (the host publishes nothing else).
                for path in ["/hr/../headers", "/hr/x/../../headers", "/hr/../../etc/passwd"] {
                    #expect(try await get("app", path).status == 404, "\(path)")
                }
                // Encodings backends decode into separators or dots: refused before the tunnel.
                for path in ["/hr/%2e%2e/headers", "/hr/..%2fheaders", "/hr/..%2Fheaders", "/hr/%2E%2E/headers", "/hr/..%5cheaders", "/hr/..%5Cheaders", "/hr/..;/headers"] {
                    let result = try await get("app", path)
                    #expect(result.status == 400, "\(path): \(result.status)")
                    #expect(result.body.contains("encoded slash, backslash or dot"), "\(path)")
                }
                let backslash = try await Curl.run(
                    deployment.url("app", "/hr/..\\headers"), caFile: deployment.caFile, extraArguments: ["--path-as-is"]
                )
                #expect(backslash.status == 400, "a raw backslash: \(backslash.status)")
                #expect(!nginx.accessLog().contains("%2e") && !nginx.accessLog().contains("%2f") && !nginx.accessLog().contains("..;"), "\(nginx.accessLog())")

                // An app that allows escapes gets them as sent.
                let allowed = try await get("raw", "/%2e/headers")
                #expect(allowed.status == 200 && requestLine(allowed) == "GET /%2e/headers HTTP/1.1", "\(allowed.status) \(requestLine(allowed))")
            }
        }

        @Test("Forwarding headers in every spelling are removed before the backend; malformed and duplicate Hosts are refused; a backend cannot plant or clear the relay's cookies")
        func spoofingLeftovers() async throws {
            try await EndToEnd.withNginx(hosts: ["app"]) { deployment, nginx in
                try deployment.writeApp(name: "app", internalURL: nginx.baseURL + "/")
                try await deployment.startRelay()
                try await deployment.startConnector()
                let spoofed = [
                    "x_forwarded_for: 6.6.6.1", "X_Real_IP: 6.6.6.2", "x_forwarded_host: evil.example", "X_Forwarded_Proto: gopher",
                    "X-FORWARDED-FOR: 6.6.6.4", "x-real_ip: 6.6.6.5",
                ]
                for http2 in [false, true] {
                    let result = try await Curl.run(deployment.url("app", "/headers"), caFile: deployment.caFile, http2: http2, headers: spoofed)
                    #expect(result.status == 200)
                    for planted in ["6.6.6.1", "6.6.6.2", "evil.example", "gopher", "6.6.6.4", "6.6.6.5"] {
                        #expect(!result.body.contains(planted), "\(planted) reached the backend (h2: \(http2)):\n\(result.body)")
                    }
                }
                // Host: a part of it must not route while the rest reaches the backend; one Host only.
                let confused = try await Curl.run(
                    deployment.url("app", "/headers"), caFile: deployment.caFile, headers: ["Host: app.localhost:@evil.example"]
                )
                #expect(confused.status == 400, "\(confused.status) \(confused.body.prefix(300))")
                // (A second Host line is refused too: curl sends only one, so the Admission unit tests cover it.)
                #expect(!nginx.accessLog().contains("evil.example"))

                let planted = try await Curl.run(deployment.url("app", "/plant"), caFile: deployment.caFile)
                let cookies = planted.headers(named: "set-cookie")
                #expect(planted.status == 200 && cookies.contains { $0.hasPrefix("theme=dark") }, "\(cookies)")
                #expect(!cookies.contains { $0.lowercased().contains("sallyport") }, "a backend planted the relay's cookie: \(cookies)")
            }
        }
    }
}
