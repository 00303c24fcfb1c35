import Foundation
import SallyportKCD
import SallyportKerberos
import SallyportPluginAPI
import SallyportSSO
import SallyportTesting
import Synchronization
import Testing

extension EndToEnd {
    /// The GSS-API binding against a real KDC (Samba AD) and a real Negotiate backend (Apache mod_auth_gssapi).
    /// Inside the serialized end-to-end suite: it sets KRB5_CONFIG for the test process, which no other test may
    /// see, and no child process started meanwhile may inherit.
    @Suite("GSS-API binding")
    struct GSSTests {
        @Test("Protocol transition and constrained delegation give a token Apache accepts as the user; refusals carry the KDC's reason")
        func delegationAgainstSambaAndApache() async throws {
            let work = try TestDirectory(prefix: "sallyport-gss")
            defer { work.remove() }
            chmod(work.path, 0o755)  // Apache's workers (www-data) read the backend keytab inside
            // Free ports, never 88: another test bed (an earlier, interrupted run) cannot answer in its place.
            let ports = ["KRB_TESTBED_KDC_PORT": String(try FreePort.next()), "KRB_TESTBED_KPASSWD_PORT": String(try FreePort.next())]
            let bed = try await KerberosTestBed.start(directory: work.file("bed"), environment: ports)
            // GSS-API reads KRB5_CONFIG from the process's environment: set only while this (serialized) test runs.
            let previous = ProcessInfo.processInfo.environment["KRB5_CONFIG"]
            defer {
                if let previous { setenv("KRB5_CONFIG", previous, 1) } else { unsetenv("KRB5_CONFIG") }
            }
            do {
                try await self.checkDelegation(bed)
                try await self.checkHandlerAndCache(bed)
            } catch {
                await bed.stop()
                throw error
            }
            await bed.stop()
        }

        func checkDelegation(_ bed: KerberosTestBed) async throws {
            let port = try FreePort.next()
            try await bed.startApache(port: port)
            setenv("KRB5_CONFIG", try #require(bed["KRB5_CONFIG"]), 1)

            let realm = try #require(bed["REALM"])
            let app = try GSSName(principal: try #require(bed["APP_SPN"]))
            for mechanism in [GSSMechanism.kerberos, .spnego] {
                let connector = try GSSCredential.fromKeytab(
                    try #require(bed["CONNECTOR_KEYTAB"]), principal: bed["CONNECTOR_PRINCIPAL"], ccache: "MEMORY:gss-test-\(mechanism)",
                    mechanism: mechanism
                )
                let alice = try connector.impersonate(try GSSName(principal: "alice@\(realm)"))
                #expect(try alice.remainingLifetime() > 0)
                // Ticket flags, read through a copy of the credential's ccache: the connector's TGT and alice's
                // S4U2Self ticket are forwardable; carol's (sensitive) is not, which is why S4U2Proxy fails for her.
                let connectorTickets = try connector.tickets()
                let found = connectorTickets.first { $0.isTGT }
                let tgt = try #require(found, "\(connectorTickets)")
                #expect(tgt.server == "krbtgt/\(realm)@\(realm)" && tgt.isForwardable)
                let evidence = try #require(KerberosDelegator.evidence(in: alice), "\((try? alice.tickets()) ?? [])")
                #expect(evidence.server.hasPrefix("sallyport-conn") && evidence.isForwardable, "\(evidence)")
                let context = GSSInitiator()
                let token = try context.firstToken(credential: alice, target: app)
                #expect(!token.isEmpty)
                let result = try await Curl.run(
                    "http://app.corp.example.test:\(port)/whoami", caFile: nil,
                    headers: ["Authorization: Negotiate \(Data(token).base64EncodedString())"],
                    extraArguments: ["--resolve", "app.corp.example.test:\(port):127.0.0.1"]
                )
                #expect(result.status == 200, "\(mechanism): \(result.body)")
                #expect(result.body.contains("user=alice@\(realm)"), "\(mechanism): \(result.body)")
                // Mutual authentication: the backend's reply token verifies.
                let reply = try #require(result.header("www-authenticate")?.split(separator: " ").last.flatMap { Data(base64Encoded: String($0)) })
                _ = try context.verifyReply(Array(reply), credential: alice, target: app)
                #expect(context.isEstablished)

                // A sensitive account and an SPN outside the delegation list fail at S4U2Proxy with the KDC's reason.
                let carol = try connector.impersonate(try GSSName(principal: "carol@\(realm)"))
                #expect(KerberosDelegator.evidence(in: carol)?.isForwardable == false, "\((try? carol.tickets()) ?? [])")
                #expect {
                    try GSSInitiator().firstToken(credential: carol, target: app)
                } throws: { error in
                    (error as? GSSError)?.message.contains("KDC can't fulfill requested option") == true
                }
                let other = try GSSName(principal: try #require(bed["OTHER_SPN"]))
                #expect(throws: GSSError.self) { try GSSInitiator().firstToken(credential: alice, target: other) }
                // An unknown user fails at S4U2Self.
                #expect {
                    try connector.impersonate(try GSSName(principal: "nobody@\(realm)"))
                } throws: { error in
                    (error as? GSSError)?.message.contains("not found") == true
                }
            }
        }

        /// The kcd handler in process: a backend reply that does not verify is refused, the real one is accepted;
        /// the ticket cache drops its least recently used entry beyond its size.
        func checkHandlerAndCache(_ bed: KerberosTestBed) async throws {
            let port = try #require(bed["APACHE_PORT"].flatMap { Int($0) })
            let delegator = KerberosDelegator(
                settings: .init(keytab: try #require(bed["CONNECTOR_KEYTAB"]), principal: bed["CONNECTOR_PRINCIPAL"], maxEntries: 1),
                executor: { work in DispatchQueue.global().async { work() } }
            )
            // GSS calls (tokens, reply checks) must run on the host's blocking pool, never on the concurrency pool.
            let blockingCalls = Atomic<Int>(0)
            let handler = try KCDHandlerFactory(delegator: delegator).makeHandler(
                context: HandlerContext(
                    appName: "app", settings: ["spn": .string("HTTP/app.corp.example.test")], logger: PluginLogger { _, _, _ in },
                    metrics: PluginMetrics { _, _, _ in },
                    blockingExecutor: { work in
                        blockingCalls.add(1, ordering: .relaxed)
                        DispatchQueue.global().async { work() }
                    }
                )
            )
            func identity(_ user: String) -> Identity {
                Identity(userPrincipalName: user, subject: user, issuer: "https://issuer.test", provider: "test", groups: [])
            }
            func prepared(_ user: String) async throws -> BackendRequest {
                var request = BackendRequest(method: "GET", path: "/whoami")
                #expect(await handler.prepare(&request, identity: identity(user), attempt: 1) == .proceed)
                return request
            }

            // A reply token that is not the backend's: refused with 502, nothing delivered.
            let forged = try await prepared("alice@corp.example.test")
            #expect(blockingCalls.load(ordering: .relaxed) >= 1, "the token was made off the host's blocking pool")
            var bogus = BackendResponse(status: 200, headers: HeaderFields([.init(name: "WWW-Authenticate", value: "Negotiate oYGzMIGwoAMKAQChCwYJKoZIhvcSAQICooGbBIGYYIGVBgkqhkiG9xIBAgICAG+BhTCBgqADAgEFoQMCAQ+idjB0oAMCARKibQRr")]))
            guard case .refuse(let refusal) = await handler.inspect(&bogus, request: forged, identity: identity("alice@corp.example.test"), attempt: 1) else {
                Issue.record("a reply that does not verify must be refused")
                return
            }
            #expect(refusal.status == 502)
            #expect(refusal.reason.hasPrefix("mutual-authentication-failed"))

            // The real backend's reply verifies.
            let real = try await prepared("alice@corp.example.test")
            let answer = try await Curl.run(
                "http://127.0.0.1:\(port)/whoami", caFile: nil, headers: ["Authorization: \(try #require(real.headers["Authorization"]))"]
            )
            #expect(answer.body.contains("user=alice@"))
            var reply = BackendResponse(status: 200, headers: HeaderFields([.init(name: "WWW-Authenticate", value: try #require(answer.header("www-authenticate")))]))
            let callsBeforeReply = blockingCalls.load(ordering: .relaxed)
            #expect(await handler.inspect(&reply, request: real, identity: identity("alice@corp.example.test"), attempt: 1) == .deliver)
            #expect(blockingCalls.load(ordering: .relaxed) == callsBeforeReply + 1, "the reply was checked off the host's blocking pool")
            #expect(real.connectionAffinity != nil)

            // One entry: bob pushes alice out, so alice's next request is a new S4U2Self; bob's is not.
            let before = try await bed.count(user: "alice")["S4U2SELF"] ?? 0
            _ = try await prepared("bob@corp.example.test")
            #expect(delegator.cachedCount == 1)
            _ = try await prepared("alice@corp.example.test")
            let bobBefore = try await bed.count(user: "bob")["S4U2SELF"] ?? 0
            _ = try await prepared("alice@corp.example.test")
            #expect(try await bed.count(user: "alice")["S4U2SELF"] == before + 1, "alice was evicted once, then cached")
            #expect(try await bed.count(user: "bob")["S4U2SELF"] == bobBefore)
        }
}
}
