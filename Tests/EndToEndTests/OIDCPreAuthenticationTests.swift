import Foundation
import SallyportTesting
import Testing

extension EndToEnd {
    /// OIDC sign-in at the relay against a real OpenID provider (oidc-provider-mock), with headless Chromium
    /// for the browser flow and curl for the edge cases.
    @Suite("Pre-authentication with OIDC sign-in")
    struct OIDCPreAuthenticationTests {
        static let alice = #"{"sub":"alice","upn":"alice@corp.example.test","name":"Alice Example","email":"alice@corp.example.test","groups":["staff","payroll"]}"#
        static let bob = #"{"sub":"bob","upn":"bob@corp.example.test","name":"Bob Example","email":"bob@corp.example.test","groups":["staff"]}"#

        struct Setup {
            let deployment: Deployment
            let nginx: Nginx
            let provider: ChildProcess
            let providerURL: String
            let nginxDirectory: TestDirectory

            func backendHits() -> Int { nginx.accessLog().components(separatedBy: "\n").filter { $0.contains("GET /headers") }.count }

            func stop() async {
                provider.signal(SIGKILL)
                await nginx.stop()
                await deployment.shutdown()
                nginxDirectory.remove()
            }
        }

        static func start(lifetime: String = "1h", idleTimeout: String = "10m") async throws -> Setup {
            let providerPort = try FreePort.next()
            let closedPort = try FreePort.next()
            let providerURL = "http://127.0.0.1:\(providerPort)"
            let deploymentHosts = ["portal", "payroll", "down", "nosecret"]
            let nginxDirectory = try TestDirectory(prefix: "sallyport-oidc-backend")
            let nginx = try await Nginx.start(directory: nginxDirectory)
            var deployment: Deployment!
            deployment = try Deployment(
                hosts: deploymentHosts,
                relayExtra: """
                    identityProviders:
                      corp:
                        type: oidc
                        issuer: \(providerURL)
                        clientID: sallyport-test
                        clientSecretFile: oidc-secret
                        claims:
                          keep: [upn]
                      down:
                        type: oidc
                        issuer: http://127.0.0.1:\(closedPort)
                        clientID: sallyport-test
                        clientSecretFile: oidc-secret
                      nosecret:
                        type: oidc
                        issuer: \(providerURL)
                        clientID: sallyport-test
                        clientSecretFile: missing-secret
                    sessions:
                      lifetime: \(lifetime)
                      idleTimeout: \(idleTimeout)
                    """
            )
            _ = try deployment.directory.write("oidc-secret", "s3cret-with+and/\n")
            var arguments = ["\(providerPort)", "--client-id", "sallyport-test", "--client-secret", "s3cret-with+and/", "--require-nonce"]
            for host in deploymentHosts {
                arguments += ["--redirect-uri", deployment.url(host, "/.sallyport/auth/callback")]
            }
            arguments += ["--user", alice, "--user", bob]
            let provider = try await EndToEnd.startPythonPeer("oidc_provider.py", arguments, logFile: deployment.directory.file("oidc-provider.log"))
            let sso = ["sso:", "  handler: header", "  headers:", "    X-Remote-User: \"{upn}\"", "    X-Remote-Groups: \"{groups}\"", "    X-Remote-Name: \"{name}\""]
            try deployment.writeApp(name: "portal", internalURL: nginx.baseURL + "/", auth: ["preAuthentication:", "  method: oidc", "  provider: corp"] + sso)
            try deployment.writeApp(
                name: "payroll", internalURL: nginx.baseURL + "/",
                auth: ["preAuthentication:", "  method: oidc", "  provider: corp", "  allowedGroups: [payroll]"] + sso
            )
            try deployment.writeApp(name: "down", internalURL: nginx.baseURL + "/", auth: ["preAuthentication:", "  method: oidc", "  provider: down"] + sso)
            try deployment.writeApp(
                name: "nosecret", internalURL: nginx.baseURL + "/", auth: ["preAuthentication:", "  method: oidc", "  provider: nosecret"] + sso
            )
            try await deployment.startRelay()
            try await deployment.startConnector()
            return Setup(deployment: deployment, nginx: nginx, provider: provider, providerURL: providerURL, nginxDirectory: nginxDirectory)
        }

        /// `name=value` of each `Set-Cookie` in a response.
        static func cookies(_ result: Curl.Result) -> [String: String] {
            var cookies: [String: String] = [:]
            for header in result.headers(named: "set-cookie") {
                let pair = header.split(separator: ";", maxSplits: 1)[0]
                guard let equals = pair.firstIndex(of: "=") else { continue }
                cookies[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
            }
            return cookies
        }

        /// Signs `sub` in to `host` with curl playing the browser; returns the callback URL, the login cookie
        /// and the relay's answer to the callback.
        static func curlSignIn(_ setup: Setup, host: String, sub: String) async throws -> (callback: String, loginCookie: String, answer: Curl.Result) {
            let deployment = setup.deployment
            let start = try await Curl.run(deployment.url(host, "/headers?from=curl"), caFile: deployment.caFile)
            #expect(start.status == 302)
            let authorize = try #require(start.header("location"))
            let login = try #require(Self.cookies(start).first { $0.key.hasPrefix("__Host-sallyport-login-") })
            let consent = try await Curl.run(authorize, caFile: nil, method: "POST", data: "sub=\(sub)")
            #expect(consent.status == 302, "\(consent.body)")
            let callback = try #require(consent.header("location"))
            #expect(callback.hasPrefix(deployment.url(host, "/.sallyport/auth/callback?")))
            let answer = try await Curl.run(callback, caFile: deployment.caFile, headers: ["Cookie: \(login.key)=\(login.value)"])
            return (callback, "\(login.key)=\(login.value)", answer)
        }

        @Test("A browser signs in at the provider and lands on the app with its identity; the session cookie is locked down")
        func browserSignIn() async throws {
            let setup = try await Self.start()
            let deployment = setup.deployment
            let browser = try ChildProcess.launch(
                EndToEnd.python,
                [
                    EndToEnd.resource("browser_signin.py"), deployment.url("portal", "/headers?page=1"), "--sub", "alice",
                    "--host-resolver-rules", "MAP *.localhost 127.0.0.1", "--ca-file", deployment.caFile, "--timeout", "60",
                ],
                logFile: deployment.directory.file("browser.log")
            )
            let exit = await browser.waitForExit(timeout: .seconds(120))
            let output = browser.log()
            #expect(exit == 0, "\(output)")
            let jsonLine = try #require(output.split(separator: "\n").last { $0.hasPrefix("{") }, "\(output)")
            struct Page: Decodable {
                struct Cookie: Decodable {
                    var name: String
                    var secure: Bool
                    var httpOnly: Bool
                    var sameSite: String?
                }
                var url: String
                var text: String
                var cookies: [Cookie]
            }
            let page = try JSONDecoder().decode(Page.self, from: Data(jsonLine.utf8))
            #expect(page.url == deployment.url("portal", "/headers?page=1"))
            let text = page.text.lowercased()
            #expect(text.contains("x-remote-user: alice@corp.example.test"), "\(page.text)")
            #expect(text.contains("x-remote-groups: staff,payroll"))
            #expect(text.contains("x-remote-name: alice example"))
            let session = try #require(page.cookies.first { $0.name == "__Host-sallyport-corp" }, "\(page.cookies.map(\.name))")
            #expect(session.secure && session.httpOnly)
            #expect(session.sameSite == "Lax")
            #expect(!page.cookies.contains { $0.name.hasPrefix("__Host-sallyport-login-") }, "the sign-in cookie is cleared after the callback")
            await setup.stop()
        }

        @Test("Sign-in edge cases: API clients get 401, state is single-use, tampered cookies restart sign-in, access rules, unreachable provider, sign-out")
        func signInEdgeCases() async throws {
            let setup = try await Self.start()
            let deployment = setup.deployment

            // API-style requests get 401 rather than a redirect; nothing reaches the backend.
            let json = try await Curl.run(deployment.url("portal", "/headers"), caFile: deployment.caFile, headers: ["Accept: application/json"])
            #expect(json.status == 401)
            #expect(json.header("www-authenticate")?.hasPrefix("Bearer") == true)
            let withAuthorization = try await Curl.run(deployment.url("portal", "/headers"), caFile: deployment.caFile, headers: ["Authorization: Basic YTpi"])
            #expect(withAuthorization.status == 401)
            let post = try await Curl.run(deployment.url("portal", "/headers"), caFile: deployment.caFile, data: "x=1")
            #expect(post.status == 401)

            // A browser-style request is sent to the provider with PKCE, state and nonce.
            let redirect = try await Curl.run(deployment.url("portal", "/headers"), caFile: deployment.caFile, headers: ["Accept: text/html"])
            #expect(redirect.status == 302)
            let location = try #require(redirect.header("location"))
            #expect(location.hasPrefix(setup.providerURL + "/oauth2/authorize?"))
            for parameter in ["code_challenge_method=S256", "code_challenge=", "state=", "nonce=", "response_type=code", "client_id=sallyport-test"] {
                #expect(location.contains(parameter), "\(parameter) missing from \(location)")
            }
            let loginCookie = try #require(redirect.headers(named: "set-cookie").first { $0.hasPrefix("__Host-sallyport-login-") })
            #expect(loginCookie.contains("Secure") && loginCookie.contains("HttpOnly") && loginCookie.contains("SameSite=Lax") && loginCookie.contains("Path=/"))
            #expect(setup.backendHits() == 0)

            // A full sign-in; then the same callback again is a replay.
            let alice = try await Self.curlSignIn(setup, host: "portal", sub: "alice")
            #expect(alice.answer.status == 303)
            #expect(alice.answer.header("location") == "/headers?from=curl")
            let session = try #require(Self.cookies(alice.answer)["__Host-sallyport-corp"])
            let replay = try await Curl.run(alice.callback, caFile: deployment.caFile, headers: ["Cookie: \(alice.loginCookie)"])
            #expect(replay.status == 400)
            let noState = try await Curl.run(deployment.url("portal", "/.sallyport/auth/callback?code=abc"), caFile: deployment.caFile)
            #expect(noState.status == 400)
            let noCookie = try await Curl.run(alice.callback, caFile: deployment.caFile)
            #expect(noCookie.status == 400)

            let signedIn = try await Curl.run(deployment.url("portal", "/headers"), caFile: deployment.caFile, headers: ["Cookie: __Host-sallyport-corp=\(session)"])
            #expect(signedIn.status == 200)
            #expect(signedIn.body.lowercased().contains("x-remote-user: alice@corp.example.test"))
            #expect(setup.backendHits() == 1)

            // Tampered, truncated or moved cookies mean a fresh sign-in, never an error.
            var tampered = Array(session)
            tampered[tampered.count / 2] = tampered[tampered.count / 2] == "A" ? "B" : "A"
            for (label, value) in [("tampered", String(tampered)), ("truncated", String(session.dropLast(10))), ("garbage", "%%%")] {
                let result = try await Curl.run(deployment.url("portal", "/headers"), caFile: deployment.caFile, headers: ["Cookie: __Host-sallyport-corp=\(value)"])
                #expect(result.status == 302, "\(label) cookie: \(result.status)")
            }
            let moved = try await Curl.run(deployment.url("payroll", "/headers"), caFile: deployment.caFile, headers: ["Cookie: __Host-sallyport-corp=\(session)"])
            #expect(moved.status == 302, "a session cookie is valid only on the host that set it")
            #expect(setup.backendHits() == 1)

            // Access rules: bob is not in the payroll group.
            let bob = try await Self.curlSignIn(setup, host: "payroll", sub: "bob")
            #expect(bob.answer.status == 303)
            let bobSession = try #require(Self.cookies(bob.answer)["__Host-sallyport-corp"])
            let denied = try await Curl.run(deployment.url("payroll", "/headers"), caFile: deployment.caFile, headers: ["Cookie: __Host-sallyport-corp=\(bobSession)"])
            #expect(denied.status == 403)
            #expect(denied.body.contains("bob@corp.example.test"))
            #expect(setup.backendHits() == 1)

            // An unreachable provider: its app answers 503, the others keep serving.
            let down = try await Curl.run(deployment.url("down", "/headers"), caFile: deployment.caFile)
            #expect(down.status == 503)
            #expect(down.body.contains("identity provider cannot be reached"))
            // A provider whose client secret cannot be read: its app answers 503 (the relay said why at start).
            let noSecret = try await Curl.run(deployment.url("nosecret", "/headers"), caFile: deployment.caFile)
            #expect(noSecret.status == 503)
            #expect(deployment.relay?.log().contains("identityProviders.nosecret.clientSecretFile: cannot read") == true)
            let stillUp = try await Curl.run(deployment.url("portal", "/headers"), caFile: deployment.caFile, headers: ["Cookie: __Host-sallyport-corp=\(session)"])
            #expect(stillUp.status == 200)

            // The backend never sees the relay's cookies; the app's own cookies pass.
            let withOwnCookie = try await Curl.run(
                deployment.url("portal", "/headers"), caFile: deployment.caFile, headers: ["Cookie: theme=dark; __Host-sallyport-corp=\(session); lang=en"]
            )
            #expect(withOwnCookie.status == 200)
            #expect(withOwnCookie.body.contains("theme=dark; lang=en"))
            #expect(!withOwnCookie.body.contains("sallyport"))

            // Health checks need no sign-in, on any host.
            #expect(try await Curl.run(deployment.url("down", "/.sallyport/health"), caFile: deployment.caFile).status == 200)
            // Other paths under /.sallyport/ are the relay's too: unknown ones are 404, and never forwarded.
            let unknownRelayPath = try await Curl.run(deployment.url("portal", "/.sallyport/unknown"), caFile: deployment.caFile)
            #expect(unknownRelayPath.status == 404)
            #expect(!unknownRelayPath.body.contains("GET /.sallyport"), "the request reached the backend")

            // Sign-out: a link shows a button; only a same-site POST clears the session cookie.
            let signOutURL = deployment.url("portal", "/.sallyport/auth/sign-out")
            let signOutPage = try await Curl.run(signOutURL, caFile: deployment.caFile)
            #expect(signOutPage.status == 200)
            #expect(signOutPage.headers(named: "set-cookie").isEmpty)
            #expect(signOutPage.body.contains("<form method=\"post\""))
            let crossSite = try await Curl.run(signOutURL, caFile: deployment.caFile, method: "POST", headers: ["Origin: https://evil.example"])
            #expect(crossSite.status == 403)
            #expect(crossSite.headers(named: "set-cookie").isEmpty)
            let signOut = try await Curl.run(
                signOutURL, caFile: deployment.caFile, method: "POST", headers: ["Origin: https://portal.localhost:\(deployment.publicPort)"]
            )
            #expect(signOut.status == 200)
            #expect(signOut.headers(named: "set-cookie").contains { $0.hasPrefix("__Host-sallyport-corp=;") && $0.contains("Max-Age=0") })

            // No secrets in the relay's log.
            let log = deployment.relay?.log() ?? ""
            #expect(!log.contains(session))
            #expect(!log.contains("s3cret"))
            await setup.stop()
        }

        @Test("An unreadable sessions.keyFile makes OIDC apps answer 503; other apps keep serving")
        func unreadableSessionKey() async throws {
            let deployment = try Deployment(
                hosts: ["portal", "plain"],
                relayExtra: """
                    identityProviders:
                      corp:
                        type: oidc
                        issuer: http://127.0.0.1:\(try FreePort.next())
                        clientID: sallyport-test
                        clientSecretFile: oidc-secret
                    sessions:
                      keyFile: no-such-session.key
                    """
            )
            _ = try deployment.directory.write("oidc-secret", "secret\n")
            let nginx = try await Nginx.start(directory: deployment.directory)
            try deployment.writeApp(name: "portal", internalURL: nginx.baseURL + "/", auth: ["preAuthentication:", "  method: oidc", "  provider: corp"])
            try deployment.writeApp(name: "plain", internalURL: nginx.baseURL + "/")
            try await deployment.startRelay()
            try await deployment.startConnector()
            let portal = try await Curl.run(deployment.url("portal", "/headers"), caFile: deployment.caFile)
            #expect(portal.status == 503)
            #expect(portal.body.contains("Sign-in unavailable"))
            #expect(try await Curl.run(deployment.url("plain", "/headers"), caFile: deployment.caFile).status == 200)
            #expect(deployment.relay?.log().contains("sign-in sessions are unavailable") == true)
            #expect(nginx.requestCount() == 1, "only the plain app's request reached the backend")
            await nginx.stop()
            await deployment.shutdown()
        }

        @Test("A session ends after its idle timeout, and after its absolute lifetime however busy it is")
        func sessionLifetimes() async throws {
            // Margins for a loaded machine: requests 1 s apart keep a 4 s idle clock fresh even when one takes
            // over a second; the lifetime (12 s) is checked well after it passed.
            let setup = try await Self.start(lifetime: "12s", idleTimeout: "4s")
            let deployment = setup.deployment
            func get(_ cookie: String) async throws -> Curl.Result {
                try await Curl.run(deployment.url("portal", "/headers"), caFile: deployment.caFile, headers: ["Cookie: __Host-sallyport-corp=\(cookie)"])
            }

            let first = try await Self.curlSignIn(setup, host: "portal", sub: "alice")
            let idle = try #require(Self.cookies(first.answer)["__Host-sallyport-corp"])
            #expect(try await get(idle).status == 200)
            try await Task.sleep(for: .seconds(6))
            #expect(try await get(idle).status == 302, "idle for longer than idleTimeout")

            // Busy: a request every second keeps the idle clock fresh (the relay re-issues the cookie), but
            // the absolute lifetime still ends the session.
            let second = try await Self.curlSignIn(setup, host: "portal", sub: "alice")
            var cookie = try #require(Self.cookies(second.answer)["__Host-sallyport-corp"])
            let signedInAt = ContinuousClock.now
            var refreshed = 0
            while ContinuousClock.now - signedInAt < .seconds(8) {
                try await Task.sleep(for: .seconds(1))
                let result = try await get(cookie)
                #expect(result.status == 200)
                if let renewed = Self.cookies(result)["__Host-sallyport-corp"] {
                    cookie = renewed
                    refreshed += 1
                }
            }
            #expect(refreshed > 0, "the relay renews the cookie to keep the idle clock going")
            try await Task.sleep(until: signedInAt + .seconds(14))
            #expect(try await get(cookie).status == 302, "past the absolute lifetime")
            await setup.stop()
        }
    }
}
