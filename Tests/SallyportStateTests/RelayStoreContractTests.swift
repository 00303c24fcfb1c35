import Foundation
import SallyportState
import Testing

/// What every ``RelayStore`` must do, run against each of them; the store comes from ``makeStore(_:in:)``.
@Suite("RelayStore contract")
struct RelayStoreContractTests {
    // MARK: Tokens

    @Test(arguments: Backend.allCases) func aOneUseTokenIsAcceptedOnce(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try await store.addToken(token(uses: 1))
            #expect(try await store.redeemToken(id: "tok1", secretHash: "hash1", now: t0) == .accepted(group: "dc-a"))
            #expect(try await store.redeemToken(id: "tok1", secretHash: "hash1", now: t0) == .used)
            #expect(try await store.tokens().map(\.usesLeft) == [0])
        }
    }

    @Test(arguments: Backend.allCases) func aMultiUseTokenCountsItsUses(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try await store.addToken(token(uses: 3))
            for left in [2, 1, 0] {
                #expect(try await store.redeemToken(id: "tok1", secretHash: "hash1", now: t0) == .accepted(group: "dc-a"))
                #expect(try await store.tokens().first?.usesLeft == left)
            }
            #expect(try await store.redeemToken(id: "tok1", secretHash: "hash1", now: t0) == .used)
            #expect(try await store.tokens().first?.uses == 3)
        }
    }

    @Test(arguments: Backend.allCases) func anExpiredTokenIsRefusedWithoutSpendingAUse(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try await store.addToken(token(uses: 2, expiresAt: t0 + 60))
            #expect(try await store.redeemToken(id: "tok1", secretHash: "hash1", now: t0 + 61) == .expired)
            // Expiry is exclusive: at expiresAt it is already refused.
            #expect(try await store.redeemToken(id: "tok1", secretHash: "hash1", now: t0 + 60) == .expired)
            #expect(try await store.tokens().first?.usesLeft == 2)
            #expect(try await store.redeemToken(id: "tok1", secretHash: "hash1", now: t0 + 59.999) == .accepted(group: "dc-a"))
        }
    }

    @Test(arguments: Backend.allCases) func aUsedUpTokenStaysUsedAfterItExpires(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try await store.addToken(token(uses: 1, expiresAt: t0 + 60))
            #expect(try await store.redeemToken(id: "tok1", secretHash: "hash1", now: t0) == .accepted(group: "dc-a"))
            #expect(try await store.redeemToken(id: "tok1", secretHash: "hash1", now: t0 + 120) == .used)
        }
    }

    @Test(arguments: Backend.allCases) func aWrongSecretOrUnknownIDIsUnknownAndSpendsNothing(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try await store.addToken(token(uses: 1))
            #expect(try await store.redeemToken(id: "tok1", secretHash: "other", now: t0) == .unknown)
            #expect(try await store.redeemToken(id: "nope", secretHash: "hash1", now: t0) == .unknown)
            #expect(try await store.redeemToken(id: "tok1", secretHash: "hash1", now: t0) == .accepted(group: "dc-a"))
        }
    }

    @Test(arguments: Backend.allCases) func concurrentRedemptionsOfAOneUseTokenAcceptOnlyOne(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try await store.addToken(token(uses: 1))
            let results = try await withThrowingTaskGroup(of: TokenRedemption.self) { group in
                for _ in 0..<20 {
                    group.addTask { try await store.redeemToken(id: "tok1", secretHash: "hash1", now: t0) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(results.count == 20)
            #expect(results.filter { $0 == .accepted(group: "dc-a") }.count == 1)
            #expect(results.filter { $0 == .used }.count == 19)
        }
    }

    @Test(arguments: Backend.allCases) func tokensRoundTripOldestFirstAndDelete(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            var later = token("tok2", secret: "hash2", group: "dc-b", uses: 5, expiresAt: t0 + 7200.5)
            later.createdAt = t0 + 10
            try await store.addToken(later)
            try await store.addToken(token("tok1"))
            #expect(try await store.tokens() == [token("tok1"), later])

            let error = await #expect(throws: StoreError.self) { try await store.addToken(token("tok1", secret: "x")) }
            #expect(error?.code == .conflict)
            #expect(error?.description.contains("tok1") == true)

            #expect(try await store.deleteToken(id: "tok1"))
            #expect(try await !store.deleteToken(id: "tok1"))
            #expect(try await store.tokens().map(\.id) == ["tok2"])
        }
    }

    @Test(arguments: Backend.allCases) func deletingExpiredTokensKeepsTheOthers(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try await store.addToken(token("old1", expiresAt: t0 - 100))
            try await store.addToken(token("old2", expiresAt: t0 - 1))
            try await store.addToken(token("edge", expiresAt: t0))
            try await store.addToken(token("new", expiresAt: t0 + 100))
            #expect(try await store.deleteTokens(expiredBefore: t0) == 2)
            #expect(try await store.tokens().map(\.id).sorted() == ["edge", "new"])
            #expect(try await store.deleteTokens(expiredBefore: t0) == 0)
        }
    }

    // MARK: Connectors

    @Test(arguments: Backend.allCases) func aRegisteredConnectorIsFoundByItsCertificate(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try await store.addConnector(connector("c-1"), certificate: certificate("aa11"))
            try await store.addConnector(connector("c-0", group: "dc-b", registeredAt: t0 - 5), certificate: certificate("bb22", of: "c-0"))

            let found = try await store.connector(certificateFingerprint: "aa11")
            #expect(found?.0 == connector("c-1"))
            #expect(found?.1 == certificate("aa11"))
            #expect(try await store.connector(certificateFingerprint: "cc33") == nil)
            #expect(try await store.connector(id: "c-1") == connector("c-1"))
            #expect(try await store.connector(id: "c-9") == nil)
            #expect(try await store.connectors().map(\.id) == ["c-0", "c-1"])
            #expect(try await store.certificates(connectorID: "c-1") == [certificate("aa11")])
        }
    }

    @Test(arguments: Backend.allCases) func aDuplicateConnectorIDIsAConflictAndChangesNothing(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try await store.addConnector(connector("c-1"), certificate: certificate("aa11"))
            let error = await #expect(throws: StoreError.self) {
                try await store.addConnector(connector("c-1", group: "dc-new"), certificate: certificate("bb22"))
            }
            #expect(error?.code == .conflict)
            #expect(error?.description.contains("c-1") == true)
            #expect(try await store.connector(certificateFingerprint: "bb22") == nil)
            #expect(try await store.groups().map(\.name) == ["dc-a"])
        }
    }

    @Test(arguments: Backend.allCases) func aDuplicateFingerprintIsAConflictAndRollsTheRegistrationBack(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try await store.addConnector(connector("c-1"), certificate: certificate("aa11"))
            let error = await #expect(throws: StoreError.self) {
                try await store.addConnector(connector("c-2", group: "dc-new"), certificate: certificate("aa11", of: "c-2"))
            }
            #expect(error?.code == .conflict)
            #expect(error?.description.contains("aa11") == true)
            // The connector row and the group inserted before the certificate failed are gone with it.
            #expect(try await store.connector(id: "c-2") == nil)
            #expect(try await store.groups().map(\.name) == ["dc-a"])
            #expect(try await store.connector(certificateFingerprint: "aa11")?.0.id == "c-1")
        }
    }

    @Test(arguments: Backend.allCases) func concurrentRegistrationsAllSucceed(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<20 {
                    group.addTask {
                        try await store.addConnector(
                            connector("c-\(i)", group: "g\(i % 3)"), certificate: certificate("fp\(i)", of: "c-\(i)"))
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await store.connectors().count == 20)
            #expect(try await store.groups().map(\.name) == ["g0", "g1", "g2"])
        }
    }

    @Test(arguments: Backend.allCases) func movingAConnectorChangesItsGroupAndCreatesTheGroup(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try await store.addConnector(connector("c-1"), certificate: certificate("aa11"))
            var moved = connector("c-1")
            moved.group = "dc-b"
            #expect(try await store.moveConnector(id: "c-1", to: "dc-b") == moved)
            #expect(try await store.connector(id: "c-1") == moved)
            #expect(try await store.connector(certificateFingerprint: "aa11")?.0.group == "dc-b")
            #expect(try await store.groups().map(\.name) == ["dc-a", "dc-b"])

            #expect(try await store.moveConnector(id: "c-9", to: "dc-c") == nil)
            #expect(try await store.groups().map(\.name) == ["dc-a", "dc-b"])
        }
    }

    @Test(arguments: Backend.allCases) func removingAConnectorRemovesItsCertificates(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try await store.addConnector(connector("c-1"), certificate: certificate("aa11"))
            try await store.addCertificate(certificate("aa12", issuedAt: t0 + 10))
            try await store.addConnector(connector("c-2"), certificate: certificate("bb22", of: "c-2"))

            #expect(try await store.removeConnector(id: "c-1") == connector("c-1"))
            #expect(try await store.connector(certificateFingerprint: "aa11") == nil)
            #expect(try await store.connector(certificateFingerprint: "aa12") == nil)
            #expect(try await store.certificates(connectorID: "c-1").isEmpty)
            #expect(try await store.connector(id: "c-1") == nil)
            #expect(try await store.connectors().map(\.id) == ["c-2"])
            #expect(try await store.connector(certificateFingerprint: "bb22")?.0.id == "c-2")
            #expect(try await store.removeConnector(id: "c-1") == nil)
            #expect(try await store.removeConnector(id: "c-9") == nil)
            // A fingerprint of a removed connector may be registered again.
            try await store.addConnector(connector("c-3"), certificate: certificate("aa11", of: "c-3"))
        }
    }

    @Test(arguments: Backend.allCases) func upkeepRemovesOnlyAConnectorUnseenSinceTheCutoff(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try await store.addConnector(connector("c-1"), certificate: certificate("aa11"))
            try await store.addConnector(connector("c-2", registeredAt: t0 + 5), certificate: certificate("bb22", of: "c-2"))
            // Seen (by some relay) after the cutoff: it stays, whatever the upkeep read before.
            try await store.recordSeen(id: "c-1", at: t0 + 20, software: "0.2.0", host: "h")
            #expect(try await store.removeConnector(id: "c-1", unseenSince: t0 + 10) == nil)
            #expect(try await store.connector(id: "c-1") != nil)
            // Never seen, registered before the cutoff: removed with its certificates.
            #expect(try await store.removeConnector(id: "c-2", unseenSince: t0 + 10)?.id == "c-2")
            #expect(try await store.connector(certificateFingerprint: "bb22") == nil)
            #expect(try await store.removeConnector(id: "c-9", unseenSince: t0 + 10) == nil)
        }
    }

    @Test(arguments: Backend.allCases) func theDatabaseClockIsNow(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            let time = try await store.databaseTime()
            // The test database runs on this host: its clock is ours.
            #expect(abs(time.timeIntervalSinceNow) < 5)
        }
    }

    @Test(arguments: Backend.allCases) func recordingSeenUpdatesLastSeenSoftwareAndHost(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try await store.addConnector(connector("c-1"), certificate: certificate("aa11"))
            try await store.recordSeen(id: "c-1", at: t0 + 30.25, software: "0.2.0", host: "new-host")
            var expected = connector("c-1")
            expected.lastSeen = t0 + 30.25
            expected.software = "0.2.0"
            expected.host = "new-host"
            #expect(try await store.connector(id: "c-1") == expected)

            // A date with more than millisecond precision comes back within a millisecond.
            let now = Date()
            try await store.recordSeen(id: "c-1", at: now, software: "0.2.0", host: "new-host")
            let seen = try #require(try await store.connector(id: "c-1")?.lastSeen)
            #expect(abs(seen.timeIntervalSince(now)) <= 0.001)

            try await store.recordSeen(id: "c-9", at: t0, software: "x", host: "y")
            #expect(try await store.connector(id: "c-9") == nil)
        }
    }

    // MARK: Certificates

    @Test(arguments: Backend.allCases) func addingACertificateNeedsARegisteredConnectorAndANewFingerprint(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            let unknown = await #expect(throws: StoreError.self) { try await store.addCertificate(certificate("aa11", of: "c-9")) }
            #expect(unknown?.code == .notFound)
            #expect(unknown?.description.contains("c-9") == true)

            try await store.addConnector(connector("c-1"), certificate: certificate("aa11"))
            var renewal = certificate("aa12", issuedAt: t0 + 100, notAfter: t0 + 200_000)
            renewal.issuedByRelay = false
            try await store.addCertificate(renewal)
            #expect(try await store.certificates(connectorID: "c-1") == [renewal, certificate("aa11")])
            #expect(try await store.connector(certificateFingerprint: "aa12")?.1 == renewal)

            let duplicate = await #expect(throws: StoreError.self) { try await store.addCertificate(certificate("aa11")) }
            #expect(duplicate?.code == .conflict)
            #expect(duplicate?.description.contains("aa11") == true)
        }
    }

    @Test(arguments: Backend.allCases) func deletingExpiredCertificatesKeepsTheOthers(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try await store.addConnector(connector("c-1"), certificate: certificate("old", notAfter: t0 - 10))
            try await store.addCertificate(certificate("edge", notAfter: t0))
            try await store.addCertificate(certificate("new", notAfter: t0 + 10))
            #expect(try await store.deleteCertificates(expiredBefore: t0) == 1)
            #expect(try await store.certificates(connectorID: "c-1").map(\.fingerprint).sorted() == ["edge", "new"])
            #expect(try await store.connector(certificateFingerprint: "old") == nil)
            #expect(try await store.connector(id: "c-1") != nil)
        }
    }

    // MARK: Groups

    @Test(arguments: Backend.allCases) func groupsAreListedByNameFromEverySource(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            try await store.addGroup("zeta", at: t0)
            try await store.addGroup("zeta", at: t0 + 99)
            try await store.addToken(token(group: "beta"))
            try await store.addConnector(connector("c-1", group: "alpha", registeredAt: t0 + 5), certificate: certificate("aa11"))
            #expect(
                try await store.groups() == [
                    GroupRecord(name: "alpha", createdAt: t0 + 5), GroupRecord(name: "beta", createdAt: t0),
                    GroupRecord(name: "zeta", createdAt: t0),
                ])
        }
    }

    // MARK: Relays

    @Test(arguments: Backend.allCases) func relaysAnnounceThemselvesAndAgeOut(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            func relay(_ address: String, seen: Date, digest: String = "d1") -> RelayRecord {
                RelayRecord(address: address, serverName: "relay.example.com", software: "0.9.0", appsDigest: digest, startedAt: t0, seenAt: seen)
            }
            try await store.announceRelay(relay("relay-b:8443", seen: t0 + 1))
            try await store.announceRelay(relay("relay-a:8443", seen: t0))
            #expect(try await store.relays(seenSince: t0) == [relay("relay-a:8443", seen: t0), relay("relay-b:8443", seen: t0 + 1)])
            // A heartbeat refreshes the row; one not refreshed ages out of the list.
            try await store.announceRelay(relay("relay-b:8443", seen: t0 + 20, digest: "d2"))
            #expect(try await store.relays(seenSince: t0 + 10) == [relay("relay-b:8443", seen: t0 + 20, digest: "d2")])
            #expect(try await store.removeRelay(address: "relay-b:8443"))
            #expect(try await !store.removeRelay(address: "relay-b:8443"))
            #expect(try await store.relays(seenSince: t0).map(\.address) == ["relay-a:8443"])
        }
    }

    // MARK: Sign-in

    @Test(arguments: Backend.allCases) func aSingleUseValueIsAcceptedOnceUntilItExpires(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            #expect(try await store.useOnce("state-1", until: t0 + 600, now: t0))
            #expect(try await !store.useOnce("state-1", until: t0 + 600, now: t0 + 1))
            #expect(try await store.useOnce("state-2", until: t0 + 600, now: t0 + 1))
            let results = try await withThrowingTaskGroup(of: Bool.self) { group in
                for _ in 0..<10 { group.addTask { try await store.useOnce("state-3", until: t0 + 600, now: t0) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(results.filter { $0 }.count == 1)
            // Once expired it is forgotten (a sign-in state is refused by its own expiry long before).
            #expect(try await store.useOnce("state-1", until: t0 + 1300, now: t0 + 700))
        }
    }

    @Test(arguments: Backend.allCases) func aSharedSecretIsTheFirstOneStored(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            let first = try await store.secret(named: "session-key", orStore: [1, 2, 3])
            let second = try await store.secret(named: "session-key", orStore: [9, 9, 9])
            let other = try await store.secret(named: "other", orStore: [0, 255])
            #expect(first == [1, 2, 3])
            #expect(second == [1, 2, 3])
            #expect(other == [0, 255])
        }
    }

    // MARK: Changes

    @Test(arguments: Backend.allCases) func membershipChangesAndOnlyTheyMoveTheGeneration(_ backend: Backend) async throws {
        try await withStore(backend) { store in
            var last = try await store.membershipGeneration()
            func expectChange(_ what: String, _ changed: Bool, sourceLocation: SourceLocation = #_sourceLocation) async throws {
                let now = try await store.membershipGeneration()
                if changed {
                    #expect(now > last, "\(what) must move the generation", sourceLocation: sourceLocation)
                } else {
                    #expect(now == last, "\(what) must not move the generation", sourceLocation: sourceLocation)
                }
                last = now
            }
            try await store.addToken(token(uses: 2))
            _ = try await store.redeemToken(id: "tok1", secretHash: "hash1", now: t0)
            try await store.addGroup("other", at: t0)
            try await expectChange("tokens and groups", false)
            try await store.addConnector(connector("c-1"), certificate: certificate("aa11"))
            try await expectChange("a registration", true)
            try await store.recordSeen(id: "c-1", at: t0 + 1, software: "0.2.0", host: "h")
            try await expectChange("a connector seen", false)
            try await store.addCertificate(certificate("aa12", issuedAt: t0 + 5, notAfter: t0 + 10))
            try await expectChange("a renewal", true)
            _ = try await store.moveConnector(id: "c-1", to: "dc-b")
            try await expectChange("a move", true)
            #expect(try await store.deleteCertificates(expiredBefore: t0 + 20) == 1)
            try await expectChange("an expired certificate deleted", true)
            _ = try await store.removeConnector(id: "c-1")
            try await expectChange("a removal", true)
            _ = try await store.removeConnector(id: "c-1")
            try await expectChange("removing nobody", false)
        }
    }

    // MARK: Durability

    @Test(arguments: Backend.allCases) func everythingSurvivesCloseAndReopen(_ backend: Backend) async throws {
        try await withTemporaryDirectory { directory in
            let first = try await makeStore(backend, in: directory)
            try await first.addToken(token(uses: 2))
            _ = try await first.redeemToken(id: "tok1", secretHash: "hash1", now: t0)
            try await first.addConnector(connector("c-1"), certificate: certificate("aa11"))
            try await first.recordSeen(id: "c-1", at: t0 + 1, software: "0.3.0", host: "h")
            try await first.addGroup("empty", at: t0)
            await first.close()

            let second = try await makeStore(backend, in: directory)
            var seen = connector("c-1")
            seen.lastSeen = t0 + 1
            seen.software = "0.3.0"
            seen.host = "h"
            var spent = token(uses: 2)
            spent.usesLeft = 1
            #expect(try await second.tokens() == [spent])
            #expect(try await second.connectors() == [seen])
            #expect(try await second.connector(certificateFingerprint: "aa11")?.1 == certificate("aa11"))
            #expect(try await second.groups().map(\.name) == ["dc-a", "empty"])
            #expect(try await second.redeemToken(id: "tok1", secretHash: "hash1", now: t0) == .accepted(group: "dc-a"))
            await second.close()
        }
    }
}
