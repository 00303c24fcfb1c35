import Crypto
import Foundation
import HTTPTypes
import Logging
import NIOCore
import SallyportConfig
import SallyportHTTP
import SallyportPKI
import SallyportState
import SallyportTunnel
import SallyportWire
import Synchronization
import X509

/// Connectors as members of the relay: registration with one-time tokens, identity from certificates, groups
/// that the relay assigns, renewal, moves, removal and status. The one place that holds the store's rows and
/// the live tunnels together.
final class Membership: Sendable {
    /// Who a tunnel connection belongs to, by the relay's registry.
    struct Identity: Sendable, Equatable {
        var connectorID: String
        var name: String
        var group: String
        var certificateNotAfter: Date
        /// The relay issued the certificate and can renew it.
        var renewable: Bool
    }

    let store: any RelayStore
    let authority: CertificateAuthority?
    /// The CA connectors trust for the tunnel listener (PEM) and its pin, which tokens carry.
    let relayCA: (pem: String, pin: String)
    let policy: ConnectorPolicy
    let registry: ConnectorRegistry
    /// `HOST:PORT` connectors dial, for printed commands (the port may only be known once the listener is bound).
    private let dialAddress: Mutex<String>
    /// Who each certificate identified, for reconnections while the database is unavailable; kept in line with
    /// the store by ``reconcile()``.
    private let known = Mutex<[String: Identity]>([:])
    /// Groups whose connectors the store says are active, while the relay warms up (see `warmingUp`).
    let expectedGroups = Mutex<Set<String>>([])
    /// When this relay started.
    let started = ContinuousClock.now
    /// Connectors whose tunnels this relay is closing (ids are never reused).
    private let cutOffIDs = Mutex<Set<String>>([])
    let logger: Logger

    var address: String { self.dialAddress.withLock { $0 } }

    /// This relay as connectors dial it: its address, and the name they check on its certificate (the
    /// address's host, as when a connector's relay.yaml names it).
    var endpoint: ControlMessage.RelayEndpoint {
        let address = self.address
        let host = (try? HostPort(parsing: address))?.host ?? address
        return ControlMessage.RelayEndpoint(address: address, serverName: host)
    }

    /// The tunnel listener is bound: an address that ended in port 0 gets the real port.
    func tunnelBound(port: Int) {
        self.dialAddress.withLock { address in
            if address.hasSuffix(":0") { address = String(address.dropLast(2)) + ":\(port)" }
        }
    }

    init(
        store: any RelayStore, authority: CertificateAuthority?, relayCA: (pem: String, pin: String), policy: ConnectorPolicy,
        registry: ConnectorRegistry, address: String, logger: Logger
    ) {
        self.store = store
        self.authority = authority
        self.relayCA = relayCA
        self.policy = policy
        self.registry = registry
        self.dialAddress = Mutex(address)
        self.logger = logger
    }

    // MARK: Identity

    /// The registered connector a tunnel's client certificate identifies, or why it is refused.
    func identify(certificateDER: [UInt8]?) async -> Result<Identity, Registration.Refusal> {
        guard let certificateDER else {
            return .failure(Registration.Refusal(error: "no-certificate", message: "a tunnel needs a connector certificate; register this connector first"))
        }
        do {
            let facts = try CertificateFacts(der: certificateDER)
            guard let (connector, certificate) = try await self.store.connector(certificateFingerprint: facts.fingerprint) else {
                return .failure(
                    Registration.Refusal(
                        error: "not-registered",
                        message:
                            "this relay has no connector with certificate \(facts.fingerprint.prefix(16))… (serial \(facts.serial)): it was removed, or never registered. Register it again with a new token: on the relay, sallyport connectors token create --group GROUP"
                    )
                )
            }
            let identity = Identity(
                connectorID: connector.id, name: connector.name, group: connector.group, certificateNotAfter: certificate.notAfter,
                renewable: certificate.issuedByRelay && self.authority != nil
            )
            self.known.withLock { $0[facts.fingerprint] = identity }
            return .success(identity)
        } catch let error as StoreError {
            // The database is down or unreachable: a connector this relay identified before (and has not seen
            // removed since) may reconnect; a new one must wait until the database is back.
            if let fingerprint = try? CertificateFacts(der: certificateDER).fingerprint, let identity = self.known.withLock({ $0[fingerprint] }),
                identity.certificateNotAfter > Date()
            {
                self.logger.warning(
                    "the state database is unavailable; a connector this relay knows is identified from memory",
                    metadata: ["connector": "\(identity.connectorID)", "error": "\(error)"]
                )
                return .success(identity)
            }
            return .failure(Registration.Refusal(error: "unavailable", message: "the relay cannot read its state: \(error)"))
        } catch {
            return .failure(Registration.Refusal(error: "bad-certificate", message: "unreadable client certificate: \(error)"))
        }
    }

    /// Records that a connector is connected now.
    func seen(_ identity: Identity, software: String, host: String) async {
        do {
            try await self.store.recordSeen(id: identity.connectorID, at: Date(), software: software, host: host)
        } catch {
            self.logger.warning("cannot record connector as seen", metadata: ["connector": "\(identity.connectorID)", "error": "\(error)"])
        }
    }

    /// What a second look at a connector's record says, once its tunnel joined the registry.
    enum Recheck: Equatable {
        case current
        /// Removed since it was identified: close the tunnel.
        case removed
        /// Moved to this group since it was identified: the tunnel must reconnect to serve it.
        case moved(String)
    }

    /// Looks at a connector's record again after its tunnel joined the registry, so that a removal or move that
    /// raced with its hello (through this relay or another) still reaches it; a removed connector is also
    /// forgotten by the cache of identities used while the database is down.
    func recheck(_ identity: Identity) async -> Recheck {
        let record: ConnectorRecord?
        do {
            record = try await self.store.connector(id: identity.connectorID)
        } catch {
            // It was identified a moment ago; a database that went away since is no removal.
            return .current
        }
        guard let record else {
            self.known.withLock { $0 = $0.filter { $0.value.connectorID != identity.connectorID } }
            return .removed
        }
        guard record.group == identity.group else {
            self.known.withLock { known in
                for (fingerprint, cached) in known where cached.connectorID == record.id { known[fingerprint]?.group = record.group }
            }
            return .moved(record.group)
        }
        return .current
    }

    // MARK: Tokens and registration

    /// Makes a token for `group`; returns it with the command to run on the connector host.
    func createToken(group: String, expiresIn: Duration, uses: Int) async throws(Registration.Refusal) -> TokenCreated {
        guard self.authority != nil else {
            throw Registration.Refusal(
                error: "no-ca",
                message: "this relay has no connector CA (connectors.ca in relay.yaml), so it cannot register connectors by token; add connectors with `sallyport connectors add --certificate FILE`, or run `sallyport relay init`"
            )
        }
        let token = RegistrationToken.generate(pin: self.relayCA.pin)
        let now = Date()
        let record = TokenRecord(
            id: token.id, secretHash: Self.hash(token.secret), group: group, createdAt: now, expiresAt: now.addingTimeInterval(expiresIn.seconds),
            uses: uses, usesLeft: uses
        )
        do {
            try await self.store.addGroup(group, at: now)
            try await self.store.addToken(record)
        } catch {
            throw Registration.Refusal(error: "unavailable", message: "cannot store the token: \(error)")
        }
        self.logger.info("registration token created", metadata: ["token": "\(token.id)", "group": "\(group)", "uses": "\(uses)", "expires": "\(record.expiresAt)"])
        return TokenCreated(
            token: token.description, id: token.id, group: group, expiresAt: record.expiresAt, uses: uses,
            command: "sallyport connector register --relay \(self.address) --token \(token)"
        )
    }

    /// Registers a connector: checks the token, issues a certificate for the request's key, stores both.
    func register(_ request: Registration.Request) async -> Result<Registration.Response, Registration.Refusal> {
        guard let authority = self.authority else {
            return .failure(Registration.Refusal(error: "no-ca", message: "this relay does not register connectors by token (it has no connectors.ca)"))
        }
        let name = request.name.trimmingCharacters(in: .whitespaces)
        for (field, value) in [("name", name), ("host", request.host)] {
            if let problem = ValueRules.connectorNameProblem(value) {
                return .failure(Registration.Refusal(error: "bad-request", message: "the connector's \(field) \(problem)"))
            }
        }
        let csr: CertificateSigningRequest
        do {
            csr = try KeyAndRequest.parseRequest(pem: request.certificateRequest)
        } catch {
            return .failure(Registration.Refusal(error: "bad-request", message: "\(error)"))
        }
        // `register --force` on a registered host: the old registration goes once the new one is made, if the host
        // proves it holds the old key (so no token can remove another connector).
        var replaced: String?
        if let replacement = request.replaces {
            let message = Registration.Replacement.message(tokenID: request.tokenID, certificateRequest: request.certificateRequest)
            guard let certificate = try? CertificateFacts.certificates(pem: replacement.certificate, source: "replaces.certificate").first, let signature = Data(base64Encoded: replacement.signature),
                KeyAndRequest.isValidSignature(signature, for: message, by: certificate),
                let facts = try? CertificateFacts(certificate: certificate)
            else {
                return .failure(
                    Registration.Refusal(
                        error: "bad-request",
                        message: "the registration to replace (--force) is not proven by its key; register without the old connector.pem and connector.key, then remove the old connector on the relay"
                    )
                )
            }
            replaced = try? await self.store.connector(certificateFingerprint: facts.fingerprint)?.0.id
        }
        do {
            let redemption = try await self.store.redeemToken(id: request.tokenID, secretHash: Self.hash(request.secret), now: Date())
            let group: String
            switch redemption {
            case .accepted(let tokenGroup): group = tokenGroup
            case .unknown:
                return .failure(Registration.Refusal(error: "token-unknown", message: "this relay knows no such token (wrong, mistyped or deleted); create a new one on the relay: sallyport connectors token create --group GROUP"))
            case .used:
                return .failure(Registration.Refusal(error: "token-used", message: "this token was already used; tokens are single-use unless made with --uses N. Create a new one on the relay: sallyport connectors token create --group GROUP"))
            case .expired:
                return .failure(Registration.Refusal(error: "token-expired", message: "this token has expired; create a new one on the relay: sallyport connectors token create --group GROUP [--expires 1h]"))
            }
            if let expected = request.group, expected != group {
                return .failure(Registration.Refusal(error: "wrong-group", message: "this token registers connectors in group \"\(group)\", not \"\(expected)\"; use a token for \"\(expected)\" (the token is spent)"))
            }
            let id = Self.makeConnectorID()
            let issued = try authority.issueClient(
                for: csr, commonName: id, organization: "Sallyport connector", validity: self.policy.certificateLifetime
            )
            let facts = try CertificateFacts(certificate: issued.certificate)
            let now = Date()
            try await self.store.addConnector(
                ConnectorRecord(id: id, name: name, host: request.host, group: group, registeredAt: now, software: request.software),
                certificate: CertificateRecord(
                    fingerprint: facts.fingerprint, connectorID: id, serial: facts.serial, issuedAt: now, notAfter: facts.notAfter, issuedByRelay: true
                )
            )
            self.logger.notice("connector registered", metadata: ["connector": "\(id)", "name": "\(name)", "host": "\(request.host)", "group": "\(group)", "token": "\(request.tokenID)"])
            if let replaced {
                _ = try? await self.remove(id: replaced, reason: "replaced by a new registration of its host (\(id))")
            }
            return .success(
                Registration.Response(connectorID: id, name: name, group: group, certificateChain: issued.chainPEM, relayCA: self.relayCA.pem)
            )
        } catch {
            self.logger.error("registration failed", metadata: ["error": "\(error)"])
            return .failure(Registration.Refusal(error: "unavailable", message: "the relay could not register the connector: \(error)"))
        }
    }

    /// Issues a renewed certificate for a connected connector's new key.
    func renew(connectorID: String, requestPEM: String) async throws(Registration.Refusal) -> String {
        guard let authority = self.authority else {
            throw Registration.Refusal(error: "no-ca", message: "this relay has no connector CA; renew this connector's certificate in your own PKI and add it again")
        }
        do {
            let request = try KeyAndRequest.parseRequest(pem: requestPEM)
            guard try await self.store.connector(id: connectorID) != nil else {
                throw Registration.Refusal(error: "not-registered", message: "connector \(connectorID) is no longer registered")
            }
            let issued = try authority.issueClient(for: request, commonName: connectorID, organization: "Sallyport connector", validity: self.policy.certificateLifetime)
            let facts = try CertificateFacts(certificate: issued.certificate)
            try await self.store.addCertificate(
                CertificateRecord(fingerprint: facts.fingerprint, connectorID: connectorID, serial: facts.serial, issuedAt: Date(), notAfter: facts.notAfter, issuedByRelay: true)
            )
            self.logger.info("connector certificate renewed", metadata: ["connector": "\(connectorID)", "serial": "\(facts.serial)", "notAfter": "\(facts.notAfter)"])
            return issued.chainPEM
        } catch let refusal as Registration.Refusal {
            throw refusal
        } catch {
            throw Registration.Refusal(error: "renewal-failed", message: "\(error)")
        }
    }

    /// Registers a connector whose certificate the administrator's own CA issued (bring your own PKI).
    func add(certificatePEM: String, name: String?, group: String) async throws(Registration.Refusal) -> ConnectorRecord {
        do {
            let certificates = try CertificateFacts.certificates(pem: certificatePEM, source: "the certificate")
            let facts = try CertificateFacts(certificate: certificates[0])
            let id = Self.makeConnectorID()
            let now = Date()
            let record = ConnectorRecord(id: id, name: name ?? facts.commonName ?? id, host: "", group: group, registeredAt: now)
            try await self.store.addConnector(
                record,
                certificate: CertificateRecord(fingerprint: facts.fingerprint, connectorID: id, serial: facts.serial, issuedAt: now, notAfter: facts.notAfter, issuedByRelay: false)
            )
            self.logger.notice("connector added with its own certificate", metadata: ["connector": "\(id)", "name": "\(record.name)", "group": "\(group)", "serial": "\(facts.serial)"])
            return record
        } catch let error as StoreError where error.code == .conflict {
            throw Registration.Refusal(error: "conflict", message: "this certificate is already registered to a connector")
        } catch {
            throw Registration.Refusal(error: "bad-request", message: "\(error)")
        }
    }

    // MARK: Moves and removal

    /// Moves a connector to another group: its tunnels stop taking the old group's requests at once, and it is
    /// asked to reconnect, which gives it the new group's apps.
    func move(id: String, to group: String) async throws(Registration.Refusal) -> ConnectorRecord {
        let moved: ConnectorRecord?
        do {
            moved = try await self.store.moveConnector(id: id, to: group)
        } catch {
            throw Registration.Refusal(error: "unavailable", message: "\(error)")
        }
        guard let moved else { throw Self.unknownConnector(id) }
        self.reconnect(moved)
        self.logger.notice("connector moved", metadata: ["connector": "\(id)", "group": "\(group)"])
        return moved
    }

    /// Tunnels of a connector that serve another group than its record's stop taking requests and are asked
    /// to reconnect, which gives them the new group's apps. Returns how many.
    @discardableResult
    private func reconnect(_ record: ConnectorRecord) -> Int {
        let stale = self.registry.all.filter { $0.connectorID == record.id && $0.group != record.group && !$0.draining }
        for connection in stale {
            connection.markDraining()
            connection.send(.reconnect("moved to group \(record.group)"))
        }
        return stale.count
    }

    /// What a drain did: the connector's tunnels take no new requests; `inFlight` are still being answered.
    struct Drain: Codable, Sendable {
        var id: String
        var name: String
        var group: String
        var inFlight: Int
    }

    /// Drains a connected connector before an upgrade or restart: its tunnels take no new request and those
    /// in flight finish; its next tunnels (after the restart) serve again. Unless `force`, refused when no
    /// other connector of its group would take requests, or when another of its group is draining already:
    /// one at a time keeps the group serving through a rolling restart. Asking again reports what is left.
    func drain(id: String, force: Bool) throws(Registration.Refusal) -> Drain {
        let connections = self.registry.all
        let own = connections.filter { $0.connectorID == id }
        guard let first = own.first else {
            throw Registration.Refusal(error: "not-found", message: "connector \(id) has no tunnel to this relay; list connected ones with: sallyport connectors list")
        }
        let group = first.group
        let alreadyDraining = own.allSatisfy(\.draining)
        if !force, !alreadyDraining {
            let others = connections.filter { $0.group == group && $0.connectorID != id }
            if let busy = others.first(where: { $0.draining }) {
                throw Registration.Refusal(
                    error: "conflict",
                    message: "connector \(busy.connectorID) (\(busy.connector)) of group \(group) is draining already; restart it and wait until it is connected again before the next one (one at a time keeps the group serving), or use --force"
                )
            }
            if !others.contains(where: { !$0.draining }) {
                throw Registration.Refusal(
                    error: "conflict",
                    message: "\(id) is the only connector of group \(group) taking requests; draining it would leave the group's apps unanswered. Add a connector to the group first, or use --force"
                )
            }
        }
        for connection in own { connection.markDraining() }
        if !alreadyDraining { self.logger.notice("connector draining on an administrator's request", metadata: ["connector": "\(id)", "group": "\(group)"]) }
        return Drain(id: id, name: first.connector, group: group, inFlight: own.reduce(0) { $0 + $1.activeRequests })
    }

    /// Removes a connector: its tunnels close now and its certificates are refused from now on. With
    /// `unseenSince` (upkeep), only if no relay has seen it since then.
    func remove(id: String, reason: String = "removed by an administrator", unseenSince cutoff: Date? = nil) async throws(Registration.Refusal) -> ConnectorRecord {
        let removed: ConnectorRecord?
        do {
            if let cutoff {
                removed = try await self.store.removeConnector(id: id, unseenSince: cutoff)
            } else {
                removed = try await self.store.removeConnector(id: id)
            }
        } catch {
            throw Registration.Refusal(error: "unavailable", message: "\(error)")
        }
        guard let removed else { throw Self.unknownConnector(id) }
        self.cutOff(id, reason: reason)
        self.logger.notice("connector removed", metadata: ["connector": "\(id)", "name": "\(removed.name)", "reason": "\(reason)"])
        return removed
    }

    /// Closes a removed connector's tunnels: no new requests from now; those in flight get a moment to finish.
    /// Returns how many tunnels it had.
    @discardableResult
    private func cutOff(_ id: String, reason: String) -> Int {
        self.cutOffIDs.withLock { _ = $0.insert(id) }
        self.known.withLock { $0 = $0.filter { $0.value.connectorID != id } }
        let tunnels = self.registry.all.filter { $0.connectorID == id }
        for connection in tunnels {
            connection.markDraining()
            connection.send(.error("this connector was \(reason); register it again to use it"))
            let channel = connection.channel
            channel.eventLoop.scheduleTask(in: Self.removalGrace) { channel.close(promise: nil) }
        }
        return tunnels.count
    }

    // MARK: Other relays' changes

    /// Follows membership changes made through other relays sharing the store: a connector removed there is cut
    /// off here, one moved there reconnects here. Looks when the store says something changed (PostgreSQL's
    /// NOTIFY) and, in case such news is lost, every `interval`; a look costs one small query unless the
    /// generation moved. Runs until cancelled.
    func followChanges(interval: Duration = .seconds(1)) async {
        let (wakeups, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        await withDiscardingTaskGroup { group in
            group.addTask {
                for await _ in self.store.membershipChanges() { wake.yield() }
            }
            group.addTask {
                while (try? await Task.sleep(for: interval)) != nil { wake.yield() }
                wake.finish()
            }
            var seen = try? await self.store.membershipGeneration()
            for await _ in wakeups {
                guard let now = try? await self.store.membershipGeneration(), now != seen else { continue }
                // Marked seen only once the connectors were read, so a failed read is tried again.
                if await self.reconcile() { seen = now }
            }
            group.cancelAll()
        }
    }

    /// Brings the live tunnels in line with the store's connectors; false if the store could not be read.
    @discardableResult
    func reconcile() async -> Bool {
        guard let records = try? await self.store.connectors() else { return false }
        let byID = Dictionary(records.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let now = Date()
        self.known.withLock { known in
            known = known.compactMapValues { identity in
                guard let record = byID[identity.connectorID], identity.certificateNotAfter > now else { return nil }
                var identity = identity
                identity.group = record.group
                return identity
            }
        }
        let live = Set(self.registry.all.map(\.connectorID))
        // Closing already (removed here): forgotten once their tunnels are gone.
        let closing = self.cutOffIDs.withLock { ids in
            ids.formIntersection(live)
            return ids
        }
        for id in live.subtracting(closing) {
            guard let record = byID[id] else {
                let closed = self.cutOff(id, reason: "removed (through another relay)")
                self.logger.notice("connector removed through another relay; its tunnels here are closed", metadata: ["connector": "\(id)", "tunnels": "\(closed)"])
                continue
            }
            if self.reconnect(record) > 0 {
                self.logger.notice("connector moved through another relay; asked it to reconnect", metadata: ["connector": "\(id)", "group": "\(record.group)"])
            }
        }
        return true
    }

    /// Tells every connected connector to drop the cached Kerberos tickets of `user` (nil: of everyone);
    /// returns the connectors told.
    func flushKerberos(user: String?) -> [String] {
        let connections = self.registry.all
        for connection in connections { connection.send(.kcdFlush(user: user)) }
        self.logger.notice("Kerberos ticket flush sent to connectors", metadata: ["user": "\(user ?? "(all)")", "connectors": "\(Set(connections.map(\.connectorID)).count)"])
        return Array(Set(connections.map(\.connectorID))).sorted()
    }

    /// How long a removed connector's requests in flight may take before its tunnels close.
    static let removalGrace: TimeAmount = .milliseconds(800)

    static func unknownConnector(_ id: String) -> Registration.Refusal {
        Registration.Refusal(error: "not-found", message: "no connector has id \(id); list them with: sallyport connectors list")
    }

    // MARK: Helpers

    /// Lowercase hex SHA-256: how token secrets are stored.
    static func hash(_ secret: String) -> String {
        CertificateFacts.hex(SHA256.hash(data: Data(secret.utf8)))
    }

    /// `c-` and 10 random letters and digits: unique enough that two connectors never share one (the store's
    /// primary key makes sure).
    static func makeConnectorID() -> String { "c-" + RegistrationToken.randomID() }
}

/// A token just made, as the admin API returns it (the only time the secret is shown).
struct TokenCreated: Codable, Sendable {
    var token: String
    var id: String
    var group: String
    var expiresAt: Date
    var uses: Int
    var command: String
}

extension Duration {
    var seconds: TimeInterval {
        let (seconds, attoseconds) = self.components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}

extension Membership {
    /// The registration service on the tunnel listener: the relay CA for anyone (the connector checks its pin),
    /// and registration itself.
    var registrationEndpoint: JSONEndpoint {
        JSONEndpoint(logger: self.logger) { request, body in
            switch (request.method, request.path ?? "") {
            case (.get, Registration.caPath):
                return .text(self.relayCA.pem, contentType: "application/x-pem-file")
            case (.post, Registration.registerPath):
                let registration: Registration.Request
                do throws(Registration.Refusal) {
                    registration = try JSONEndpoint.decode(Registration.Request.self, from: body)
                } catch {
                    return .refusal(error, status: .badRequest)
                }
                switch await self.register(registration) {
                case .success(let response): return .json(response, status: .created)
                case .failure(let refusal):
                    self.logger.warning("registration refused", metadata: ["reason": "\(refusal.error)", "token": "\(registration.tokenID)", "name": "\(registration.name)"])
                    return .refusal(refusal, status: refusal.error == "unavailable" ? .serviceUnavailable : .forbidden)
                }
            default:
                return .refusal(Registration.Refusal(error: "not-found", message: "this is a Sallyport tunnel listener; connectors register with `sallyport connector register`"), status: .notFound)
            }
        }
    }
}
