import Foundation
import SallyportKerberos
import SallyportTesting
import Testing

/// The GSS-API binding against a real KDC (Samba AD) and a real Negotiate backend (Apache mod_auth_gssapi).
@Suite("GSS-API binding", .serialized)
struct GSSTests {
    @Test("Protocol transition and constrained delegation give a token Apache accepts as the user; refusals carry the KDC's reason")
    func delegationAgainstSambaAndApache() async throws {
        let work = try TestDirectory(prefix: "sallyport-gss")
        defer { work.remove() }
        chmod(work.path, 0o755)  // Apache's workers (www-data) read the backend keytab inside
        let bed = try await KerberosTestBed.start(directory: work.file("bed"))
        do {
            try await self.checkDelegation(bed)
        } catch {
            await bed.stop()
            throw error
        }
        // The KDC and Apache must be gone before the next test bed (or another run) wants port 88.
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
}
