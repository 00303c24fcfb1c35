import Foundation
import JWTKit
import SallyportTesting
import Testing

extension EndToEnd {
    /// Trusted JWTs at the relay: real relay, connector and nginx; tokens and keys made by the test.
    @Suite("Pre-authentication with trusted JWTs")
    struct JWTPreAuthenticationTests {
        static let issuer = "https://issuer.test"

        static func relayConfig(jwksURL: String, unreachableJWKS: String) -> String {
            """
            identityProviders:
              api:
                type: jwt
                issuers:
                  - issuer: \(issuer)
                    jwksURL: \(jwksURL)
                audiences: [sallyport-test]
                claims:
                  keep: [department]
              broken:
                type: jwt
                issuers:
                  - issuer: \(issuer)
                    jwksURL: \(unreachableJWKS)
                audiences: [sallyport-test]
                token:
                  header: X-Gateway-Assertion
                claims:
                  keep: [department]
            """
        }

        static let headerSSO = [
            "sso:",
            "  handler: header",
            "  headers:",
            "    X-Remote-User: \"{upn}\"",
            "    X-Remote-Groups: \"{groups}\"",
            "    X-Remote-Department: \"{department}\"",
        ]

        @Test("Tokens are checked, identity reaches the backend, spoofed headers and unauthenticated requests never do")
        func jwtEndToEnd() async throws {
            let closedPort = try FreePort.next()
            let nginxDirectory = try TestDirectory(prefix: "sallyport-jwks")
            defer { nginxDirectory.remove() }
            let nginx = try await Nginx.start(directory: nginxDirectory)
            let issuer = try TestIssuer(issuer: Self.issuer, jwksFile: nginx.filesDirectory + "/jwks.json")
            let deployment = try Deployment(
                hosts: ["api", "payroll", "gated", "typo"],
                relayExtra: Self.relayConfig(
                    jwksURL: nginx.baseURL + "/files/jwks.json", unreachableJWKS: "http://127.0.0.1:\(closedPort)/jwks.json"
                )
            )
            try deployment.writeApp(name: "api", internalURL: nginx.baseURL + "/", auth: ["preAuthentication:", "  method: jwt", "  provider: api"] + Self.headerSSO)
            try deployment.writeApp(
                name: "payroll", internalURL: nginx.baseURL + "/",
                auth: ["preAuthentication:", "  method: jwt", "  provider: api", "  allowedGroups: [payroll]"] + Self.headerSSO
            )
            try deployment.writeApp(
                name: "gated", internalURL: nginx.baseURL + "/", auth: ["preAuthentication:", "  method: jwt", "  provider: broken"] + Self.headerSSO
            )
            try await deployment.startRelay()
            try await deployment.startConnector()
            func backendHits() -> Int { nginx.accessLog().components(separatedBy: "\n").filter { $0.contains("GET /headers") }.count }

            // No token, and a pile of bad ones: 401 with a Bearer challenge, and the backend sees none of them.
            let missing = try await Curl.run(deployment.url("api", "/headers"), caFile: deployment.caFile)
            #expect(missing.status == 401)
            #expect(missing.header("www-authenticate")?.hasPrefix("Bearer realm=") == true)
            let otherKey = ES256PrivateKey()
            let bad: [(String, String)] = [
                ("garbage", "not-a-jwt"),
                ("expired", try await issuer.token(expiresIn: -600)),
                ("wrong audience", try await issuer.token(audience: "someone-else")),
                ("foreign issuer", try await issuer.token(issuer: "https://evil.test")),
                ("bad signature", try await issuer.token(signingKey: otherKey)),
                ("unknown key", try await issuer.token(signingKey: otherKey, kid: "nobody-publishes-this")),
            ]
            for (label, token) in bad {
                let result = try await Curl.run(deployment.url("api", "/headers"), caFile: deployment.caFile, headers: ["Authorization: Bearer \(token)"])
                #expect(result.status == 401, "\(label): \(result.status)")
                #expect(result.header("www-authenticate")?.contains(#"error="invalid_token""#) == true, "\(label)")
            }
            for _ in 0..<40 {
                let result = try await Curl.run(deployment.url("api", "/headers"), caFile: deployment.caFile, http2: true)
                #expect(result.status == 401)
            }
            #expect(backendHits() == 0, "unauthenticated requests reached the backend")

            // A good token: the backend sees the identity headers the handler sets, and only those, however
            // the client tried to spoof them.
            let token = try await issuer.token(groups: ["staff", "payroll"])
            let spoofed = try await Curl.run(
                deployment.url("api", "/headers"), caFile: deployment.caFile,
                headers: [
                    "Authorization: Bearer \(token)",
                    "X-Remote-User: mallory@corp.example.test",
                    "x-remote-user: mallory2",
                    "X_Remote_User: mallory3",
                    "X-REMOTE-GROUPS: domain-admins",
                    "Connection: X-Remote-Department",
                    "X-Remote-Department: spoofed",
                    "Sallyport-Identity: eyJ1c2VyUHJpbmNpcGFsTmFtZSI6Im1hbGxvcnkifQ",
                    "sallyport_identity: forged",
                ]
            )
            #expect(spoofed.status == 200)
            let seen = spoofed.body.lowercased()
            #expect(seen.contains("x-remote-user: alice@corp.example.test"))
            #expect(seen.contains("x-remote-groups: staff,payroll"))
            #expect(seen.contains("x-remote-department: finance"))
            #expect(!seen.contains("mallory"))
            #expect(!seen.contains("x_remote_user"))
            #expect(!seen.contains("domain-admins"))
            #expect(!seen.contains("spoofed"))
            #expect(!seen.contains("sallyport"))
            #expect(seen.components(separatedBy: "x-remote-user:").count == 2, "exactly one X-Remote-User reached the backend")
            #expect(backendHits() == 1)

            // Access rules: a user outside the allowed groups gets 403 from the relay.
            let outsider = try await issuer.token(user: "bob@corp.example.test", groups: ["staff"])
            let denied = try await Curl.run(deployment.url("payroll", "/headers"), caFile: deployment.caFile, headers: ["Authorization: Bearer \(outsider)"])
            #expect(denied.status == 403)
            #expect(denied.body.contains("not allowed to use this application"))
            let allowed = try await Curl.run(deployment.url("payroll", "/headers"), caFile: deployment.caFile, headers: ["Authorization: Bearer \(token)"])
            #expect(allowed.status == 200)
            #expect(backendHits() == 2)

            // Key rotation at the issuer: a token signed with the new key is accepted once the relay refetches.
            try await Task.sleep(for: .seconds(5))
            try issuer.rotate(dropOld: true)
            let rotated = try await issuer.token()
            let afterRotation = try await Curl.run(deployment.url("api", "/headers"), caFile: deployment.caFile, headers: ["Authorization: Bearer \(rotated)"])
            #expect(afterRotation.status == 200, "\(afterRotation.body)")
            let oldKeyToken = token
            let retired = try await Curl.run(deployment.url("api", "/headers"), caFile: deployment.caFile, headers: ["Authorization: Bearer \(oldKeyToken)"])
            #expect(retired.status == 401, "a token signed with a retired key must fail")

            // An unreachable issuer: 503 for its app, while the app of the healthy provider keeps serving.
            let gated = try await Curl.run(deployment.url("gated", "/headers"), caFile: deployment.caFile, headers: ["X-Gateway-Assertion: \(rotated)"])
            #expect(gated.status == 503)
            #expect(gated.body.contains("identity provider cannot be reached"))
            let stillFine = try await Curl.run(deployment.url("api", "/headers"), caFile: deployment.caFile, headers: ["Authorization: Bearer \(rotated)"])
            #expect(stillFine.status == 200)

            // An app naming a provider the relay does not have is refused with file, line and key; the others serve.
            try deployment.writeApp(
                name: "typo", internalURL: nginx.baseURL + "/", auth: ["preAuthentication:", "  method: jwt", "  provider: apii"] + Self.headerSSO
            )
            try await deployment.relay!.waitForLog(containing: "typo.yaml:7:3: preAuthentication.provider: no identity provider \"apii\"", timeout: .seconds(10))
            let typo = try await Curl.run(deployment.url("typo", "/headers"), caFile: deployment.caFile, headers: ["Authorization: Bearer \(rotated)"])
            #expect(typo.status == 404)
            #expect(try await Curl.run(deployment.url("api", "/headers"), caFile: deployment.caFile, headers: ["Authorization: Bearer \(rotated)"]).status == 200)
            let validate = try ChildProcess.launch(
                deployment.binary, ["config", "validate", deployment.appsDirectory, "--relay", deployment.directory.file("relay.yaml")],
                logFile: deployment.directory.file("validate.log")
            )
            #expect(await validate.waitForExit(timeout: .seconds(20)) == 1)
            #expect(validate.log().contains("typo.yaml:7:3: preAuthentication.provider: no identity provider \"apii\" in the relay config (defined: api, broken)"))

            // JWKS cache rules: unknown key ids refetch at most every 5 s, and known keys keep working while the
            // issuer's key endpoint is down.
            func jwksFetches() -> Int { nginx.accessLog().components(separatedBy: "\n").filter { $0.contains("GET /files/jwks.json") }.count }
            try await Task.sleep(for: .seconds(5.5))
            let fetchesBefore = jwksFetches()
            for index in 0..<5 {
                let unknown = try await issuer.token(signingKey: ES256PrivateKey(), kid: "unknown-\(index)")
                #expect(try await Curl.run(deployment.url("api", "/headers"), caFile: deployment.caFile, headers: ["Authorization: Bearer \(unknown)"]).status == 401)
            }
            #expect(jwksFetches() - fetchesBefore == 1, "five unknown key ids within 5 s fetch the keys once, not \(jwksFetches() - fetchesBefore) times")
            try FileManager.default.removeItem(atPath: issuer.jwksFile)
            try await Task.sleep(for: .seconds(5.5))
            let whileDown = try await Curl.run(deployment.url("api", "/headers"), caFile: deployment.caFile, headers: ["Authorization: Bearer \(rotated)"])
            #expect(whileDown.status == 200, "a known key must keep working while the issuer's JWKS is unavailable: \(whileDown.body)")
            let unknownWhileDown = try await issuer.token(signingKey: ES256PrivateKey(), kid: "unknown-while-down")
            let refused = try await Curl.run(deployment.url("api", "/headers"), caFile: deployment.caFile, headers: ["Authorization: Bearer \(unknownWhileDown)"])
            #expect(refused.status == 503, "an unknown key while the keys cannot be fetched: the issuer is unavailable, not the token bad (\(refused.status))")
            let stillKnown = try await Curl.run(deployment.url("api", "/headers"), caFile: deployment.caFile, headers: ["Authorization: Bearer \(rotated)"])
            #expect(stillKnown.status == 200, "a failed refetch must not drop the cached keys")

            // Tokens never appear in the relay's log.
            let relayLog = deployment.relay?.log() ?? ""
            #expect(!relayLog.contains(token) && !relayLog.contains(rotated))
            #expect(!relayLog.contains(String(token.split(separator: ".")[2])))

            await nginx.stop()
            await deployment.shutdown()
        }
    }
}
