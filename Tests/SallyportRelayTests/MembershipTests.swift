import Foundation
import Logging
import SallyportConfig
import SallyportPKI
@testable import SallyportRelay
import SallyportState
import SallyportTunnel
import SallyportWire
import Testing
import X509

/// Membership against a real SQLite file and a real CA: tokens, registration, identity, renewal, removal, upkeep.
@Suite("Membership")
struct MembershipTests {
    struct Fixture {
        let membership: Membership
        let store: SQLiteStore
        let directory: String

        static func make(policy: ConnectorPolicy = ConnectorPolicy()) async throws -> Fixture {
            let directory = NSTemporaryDirectory() + "sallyport-membership-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let store = try await SQLiteStore.open(path: directory + "/relay.db", logger: Logger(label: "test"))
            let ca = try CertificateAuthority.generate(commonName: "test connector CA")
            let membership = Membership(
                store: store, authority: ca, relayCA: (ca.certificatePEM, try CertificateFacts.pin(of: ca.certificate.publicKey)), policy: policy,
                registry: ConnectorRegistry(), address: "relay.test:8443", logger: Logger(label: "test")
            )
            return Fixture(membership: membership, store: store, directory: directory)
        }

        func close() async {
            await self.store.close()
            try? FileManager.default.removeItem(atPath: self.directory)
        }

        /// A registration request for `token` with a fresh key; returns it and the key.
        func request(_ token: String, name: String = "c1", group: String? = nil) throws -> (Registration.Request, KeyAndRequest) {
            let parsed = try RegistrationToken(parsing: token)
            let key = try KeyAndRequest.generate(commonName: "whatever-the-connector-claims")
            return (
                Registration.Request(
                    tokenID: parsed.id, secret: parsed.secret, name: name, host: "host1", group: group, certificateRequest: key.requestPEM, software: "test"
                ), key
            )
        }

        func der(ofChain pem: String) throws -> [UInt8] {
            try CertificateFacts.der(of: CertificateFacts.certificates(pem: pem, source: "test")[0])
        }
    }

    @Test func registrationIssuesACertificateThatIdentifiesTheConnectorAndItsGroup() async throws {
        let fixture = try await Fixture.make()
        defer { Task { await fixture.close() } }
        let created = try await fixture.membership.createToken(group: "branch", expiresIn: .seconds(3600), uses: 1)
        #expect(created.command == "sallyport connector register --relay relay.test:8443 --token \(created.token)")
        #expect(try RegistrationToken(parsing: created.token).pin == fixture.membership.relayCA.pin)
        // Only the secret's hash is stored.
        let secret = try RegistrationToken(parsing: created.token).secret
        #expect(try await fixture.store.tokens().allSatisfy { $0.secretHash != secret && $0.secretHash == Membership.hash(secret) })

        let (request, _) = try fixture.request(created.token)
        let response = try await fixture.membership.register(request).get()
        #expect(response.group == "branch")
        #expect(response.relayCA == fixture.membership.relayCA.pem)
        let facts = try CertificateFacts(der: try fixture.der(ofChain: response.certificateChain))
        // The subject is the relay's choice (the id), not what the request asked for.
        #expect(facts.commonName == response.connectorID)
        let identity = try await fixture.membership.identify(certificateDER: try fixture.der(ofChain: response.certificateChain)).get()
        #expect(identity.connectorID == response.connectorID)
        #expect(identity.group == "branch")
    }

    @Test func tokenRefusalsSayWhich() async throws {
        let fixture = try await Fixture.make()
        defer { Task { await fixture.close() } }
        let once = try await fixture.membership.createToken(group: "default", expiresIn: .seconds(3600), uses: 1)
        _ = try await fixture.membership.register(fixture.request(once.token).0).get()
        #expect(await fixture.membership.register(try fixture.request(once.token).0).failure?.error == "token-used")

        let expiring = try await fixture.membership.createToken(group: "default", expiresIn: .milliseconds(10), uses: 1)
        try await Task.sleep(for: .milliseconds(50))
        #expect(await fixture.membership.register(try fixture.request(expiring.token).0).failure?.error == "token-expired")

        let other = try await fixture.membership.createToken(group: "default", expiresIn: .seconds(3600), uses: 2)
        #expect(await fixture.membership.register(try fixture.request(other.token, group: "finance").0).failure?.error == "wrong-group")

        var (forged, _) = try fixture.request(other.token)
        forged.secret = String(repeating: "A", count: 43)
        #expect(await fixture.membership.register(forged).failure?.error == "token-unknown")
    }

    @Test func aRequestNotSignedByItsKeyIsRefusedWithoutSpendingTheToken() async throws {
        let fixture = try await Fixture.make()
        defer { Task { await fixture.close() } }
        let token = try await fixture.membership.createToken(group: "default", expiresIn: .seconds(3600), uses: 1)
        var (request, _) = try fixture.request(token.token)
        request.certificateRequest = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
        #expect(await fixture.membership.register(request).failure?.error == "bad-request")
        #expect(try await fixture.store.tokens().first?.usesLeft == 1)
    }

    @Test func renewalAddsACertificateAndRemovalRefusesAll() async throws {
        let fixture = try await Fixture.make()
        defer { Task { await fixture.close() } }
        let token = try await fixture.membership.createToken(group: "default", expiresIn: .seconds(3600), uses: 1)
        let response = try await fixture.membership.register(fixture.request(token.token).0).get()
        let renewedChain = try await fixture.membership.renew(
            connectorID: response.connectorID, requestPEM: try KeyAndRequest.generate(commonName: "x").requestPEM
        )
        let first = try fixture.der(ofChain: response.certificateChain)
        let renewed = try fixture.der(ofChain: renewedChain)
        #expect(try await fixture.membership.identify(certificateDER: renewed).get().connectorID == response.connectorID)
        #expect(try await fixture.membership.identify(certificateDER: first).get().connectorID == response.connectorID)

        _ = try await fixture.membership.remove(id: response.connectorID)
        #expect(await fixture.membership.identify(certificateDER: renewed).failure?.error == "not-registered")
        #expect(await fixture.membership.identify(certificateDER: first).failure?.error == "not-registered")
        await #expect(throws: Registration.Refusal.self) {
            try await fixture.membership.renew(connectorID: response.connectorID, requestPEM: try KeyAndRequest.generate(commonName: "x").requestPEM)
        }
    }

    @Test func upkeepRemovesConnectorsUnseenForRemoveAfter() async throws {
        let fixture = try await Fixture.make(policy: ConnectorPolicy(inactiveAfter: .seconds(60), removeAfter: .seconds(600)))
        defer { Task { await fixture.close() } }
        let token = try await fixture.membership.createToken(group: "default", expiresIn: .seconds(3600), uses: 2)
        let stale = try await fixture.membership.register(fixture.request(token.token, name: "stale").0).get()
        let fresh = try await fixture.membership.register(fixture.request(token.token, name: "fresh").0).get()
        let now = Date()
        try await fixture.store.recordSeen(id: stale.connectorID, at: now.addingTimeInterval(-601), software: "t", host: "h")
        try await fixture.store.recordSeen(id: fresh.connectorID, at: now.addingTimeInterval(-120), software: "t", host: "h")
        let status = try await fixture.membership.status(now: now)
        // No tunnel here, seen within inactiveAfter: disconnected, the moment its last tunnel went; then inactive.
        #expect(status.first { $0.id == fresh.connectorID }?.state == "inactive")
        try await fixture.store.recordSeen(id: fresh.connectorID, at: now.addingTimeInterval(-5), software: "t", host: "h")
        #expect(try await fixture.membership.status(now: now).first { $0.id == fresh.connectorID }?.state == "disconnected")
        try await fixture.store.recordSeen(id: fresh.connectorID, at: now.addingTimeInterval(-120), software: "t", host: "h")
        await fixture.membership.sweep(now: now)
        #expect(try await fixture.store.connectors().map(\.id) == [fresh.connectorID])
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let failure) = self { return failure }
        return nil
    }
}
