import AsyncHTTPClient
import Foundation
import JWTKit
import Logging
import NIOCore
import NIOHTTP1
import SallyportConfig
import SallyportHTTP
import Synchronization

/// An issuer's signing keys (JWKS), fetched over HTTPS or read from a file, cached, and fetched again when a
/// token names a key the cache does not have (key rotation) or the cache is old.
actor KeySet {
    private let source: JWTSettings.KeySource
    private let client: HTTPClient
    private let logger: Logger
    private var keys: (JWTKeyCollection, [String: String])?
    private var fetchedAt: ContinuousClock.Instant?
    private var inflight: Task<(JWTKeyCollection, [String: String]), any Error>?
    /// Counts the key sets fetched: a token verified under an earlier set is verified again (its key may be gone).
    nonisolated let generation = Atomic<Int>(0)

    /// A token with an unknown key id causes a refetch at most this often (so garbage cannot hammer the issuer).
    static let minimumRefetchInterval: Duration = .seconds(5)
    /// Keys are fetched again after this long even when every token's key is known (revoked keys go away).
    static let maximumAge: Duration = .seconds(3600)

    /// The algorithms the provider is configured for; nil: each key's own, or its type's.
    private let algorithms: [String]?

    init(source: JWTSettings.KeySource, algorithms: [String]? = nil, client: HTTPClient, logger: Logger) {
        self.source = source
        self.algorithms = algorithms
        self.client = client
        self.logger = logger
    }

    /// Verifies the token's signature and returns its claims (not yet checked).
    ///
    /// A token whose `kid` the cached set lacks makes the set be fetched again (at most every
    /// ``minimumRefetchInterval``): that is how rotated keys arrive. jwt-kit would otherwise try its default key.
    func verify(_ token: String) async throws(AuthFailure) -> TokenClaims {
        let header = Self.header(of: token)
        let kid = header?.kid
        var (collection, kids) = try await self.current()
        if let kid, kids[kid] == nil {
            guard self.mayRefetch else { throw .unknownKey }
            self.logger.info("a token names an unknown key; fetching the issuer's keys again", metadata: ["kid": "\(LogText.escaped(kid))"])
            (collection, kids) = try await self.refresh()
            guard kids[kid] != nil else { throw .unknownKey }
        }
        // The key decides the algorithm, never the token: its `alg` must be the one pinned for its key.
        let allowed = kid.flatMap { kids[$0] }.map { [$0] } ?? Array(Set(kids.values))
        guard let alg = header?.alg, allowed.contains(alg) else { throw .badSignature }
        do {
            return try await collection.verify(token, as: TokenClaims.self)
        } catch let error as JWTError where error.errorType == .malformedToken || error.errorType == .missingKIDHeader {
            throw .malformed
        } catch is DecodingError {
            throw .malformed
        } catch {
            throw .badSignature
        }
    }

    /// The `kid` and `alg` of a token's header, read without trusting them (the kid only picks the key; the
    /// alg must match the key's).
    struct Header: Decodable {
        var kid: String?
        var alg: String?
    }

    static func header(of token: String) -> Header? {
        UnverifiedJWT.part(0, of: token, as: Header.self)
    }

    static func keyID(of token: String) -> String? {
        Self.header(of: token)?.kid
    }

    /// The algorithm a key is used with: its own `alg`, or for a key without one (Entra ID's, for example) the
    /// first of the provider's `algorithms` its type can use, else the one its type implies: RS256 for RSA (as
    /// OpenID Connect's default) and the curve's for EC and OKP. nil: the key is not used. jwt-kit would
    /// otherwise take the first token's `alg` and keep it for the key: one forged token with another
    /// algorithm made every genuine token fail until the keys were fetched again.
    static func pinnedAlgorithm(of jwk: JWK, allowed: [String]? = nil) -> JWK.Algorithm? {
        let typeAllows = Self.algorithms(forTypeOf: jwk)
        if let own = jwk.algorithm {
            guard typeAllows.contains(own), allowed.map({ $0.contains(own.rawValue) }) ?? true else { return nil }
            return own
        }
        if let allowed { return typeAllows.first { allowed.contains($0.rawValue) } }
        return typeAllows.first
    }

    /// The signing algorithms a key's type and curve can be used with, the implied one first.
    static func algorithms(forTypeOf jwk: JWK) -> [JWK.Algorithm] {
        if jwk.keyType == .rsa { return [.rs256, .rs384, .rs512, .ps256, .ps384, .ps512] }
        switch jwk.curve {
        case .ecdsa(.p256)?: return [.es256]
        case .ecdsa(.p384)?: return [.es384]
        case .ecdsa(.p521)?: return [.es512]
        case .eddsa(.ed25519)?: return [.eddsa]
        default: return []
        }
    }

    private var mayRefetch: Bool {
        guard let fetchedAt else { return true }
        return ContinuousClock.now - fetchedAt >= Self.minimumRefetchInterval
    }

    /// The cached keys, or freshly fetched ones when there are none or they are old.
    private func current() async throws(AuthFailure) -> (JWTKeyCollection, [String: String]) {
        if let keys, let fetchedAt, ContinuousClock.now - fetchedAt < Self.maximumAge { return keys }
        do {
            return try await self.refresh()
        } catch {
            // Old keys are better than none while the issuer is unreachable.
            if let keys {
                self.logger.warning("could not refresh the issuer's keys; using the cached ones", metadata: ["error": "\(error)"])
                return keys
            }
            throw error
        }
    }

    /// Fetches the keys; concurrent callers share one fetch.
    private func refresh() async throws(AuthFailure) -> (JWTKeyCollection, [String: String]) {
        let task: Task<(JWTKeyCollection, [String: String]), any Error>
        if let inflight {
            task = inflight
        } else {
            let (source, client, algorithms) = (self.source, self.client, self.algorithms)
            task = Task { try await Self.load(source, algorithms: algorithms, client: client) }
            self.inflight = task
        }
        defer { if self.inflight == task { self.inflight = nil } }
        do {
            let collection = try await task.value
            self.keys = collection
            self.fetchedAt = .now
            self.generation.add(1, ordering: .releasing)
            return collection
        } catch let failure as AuthFailure {
            self.fetchedAt = .now  // rate-limit retries against a failing issuer too
            throw failure
        } catch {
            self.fetchedAt = .now
            throw .providerUnavailable("\(error)")
        }
    }

    static func load(_ source: JWTSettings.KeySource, algorithms: [String]?, client: HTTPClient) async throws -> (JWTKeyCollection, [String: String]) {
        let json: String
        switch source {
        case .file(let path):
            guard let data = FileManager.default.contents(atPath: path) else {
                throw AuthFailure.providerUnavailable("cannot read the JWKS file \(path)")
            }
            json = String(decoding: data, as: UTF8.self)
        case .url(let url):
            json = try await HTTPFetch.get(url, client: client, what: "JWKS")
        }
        let jwks: JWKS
        do {
            jwks = try JSONDecoder().decode(JWKS.self, from: Data(json.utf8))
        } catch {
            throw AuthFailure.providerUnavailable("the JWKS at \(source) is not a valid key set: \(error)")
        }
        // Keys this relay cannot use (no kid, a symmetric or unknown type) are skipped, not fatal to the rest.
        let collection = JWTKeyCollection()
        var kids: [String: String] = [:]
        for var jwk in jwks.keys {
            guard let kid = jwk.keyIdentifier?.string, let algorithm = Self.pinnedAlgorithm(of: jwk, allowed: algorithms) else { continue }
            jwk.algorithm = algorithm
            guard (try? await collection.add(jwk: jwk)) != nil else { continue }
            kids[kid] = algorithm.rawValue
        }
        guard !kids.isEmpty else {
            throw AuthFailure.providerUnavailable("the JWKS at \(source) has no usable signing key (each needs a kid and an RSA, EC or OKP key)")
        }
        return (collection, kids)
    }
}

/// Small GET/POST helpers over AsyncHTTPClient with bounded bodies and timeouts.
enum HTTPFetch {
    static let timeout: TimeAmount = .seconds(10)
    static let maxBody = 1 << 20

    static func get(_ url: String, client: HTTPClient, what: String) async throws -> String {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Accept", value: "application/json")
        return try await self.execute(request, client: client, what: what).body
    }

    /// Executes a request; any status other than 200 throws ``AuthFailure/providerUnavailable``, except that
    /// `acceptErrors` returns 4xx bodies (token endpoint errors are JSON the caller reads).
    static func execute(_ request: HTTPClientRequest, client: HTTPClient, what: String, acceptErrors: Bool = false) async throws -> (status: Int, body: String) {
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: timeout)
        } catch {
            throw AuthFailure.providerUnavailable("\(what) request to \(request.url) failed: \(error)")
        }
        let body: ByteBuffer
        do {
            body = try await response.body.collect(upTo: maxBody)
        } catch {
            throw AuthFailure.providerUnavailable("\(what) response from \(request.url) could not be read: \(error)")
        }
        let status = Int(response.status.code)
        guard status == 200 || (acceptErrors && (400..<500).contains(status)) else {
            throw AuthFailure.providerUnavailable("\(what) request to \(request.url) answered \(status)")
        }
        return (status, String(buffer: body))
    }
}
