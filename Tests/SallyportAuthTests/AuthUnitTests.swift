import AsyncHTTPClient
import Crypto
import CryptoExtras
import Foundation
import HTTPTypes
import JWTKit
import Logging
import SallyportConfig
import SallyportHTTP
import SallyportPluginAPI
import Testing

@testable import SallyportAuth

@Suite("Sealed cookies")
struct SealedCookieTests {
    let sealer = CookieSealer(key: .init(size: .bits256))

    struct Value: Codable, Equatable { var user: String }

    @Test func roundTripsOnlyInItsOwnContext() throws {
        let sealed = try #require(sealer.seal(Value(user: "alice"), context: "session|a|host.example"))
        #expect(sealer.open(sealed, as: Value.self, context: "session|a|host.example") == Value(user: "alice"))
        #expect(sealer.open(sealed, as: Value.self, context: "session|a|other.example") == nil, "moved to another host")
        #expect(CookieSealer(key: .init(size: .bits256)).open(sealed, as: Value.self, context: "session|a|host.example") == nil, "another key")
        #expect(!sealed.contains("alice"), "the value is encrypted, not just signed")
    }

    @Test func anyChangeFailsToOpen() throws {
        let sealed = try #require(sealer.seal(Value(user: "alice"), context: "c"))
        // Not the last character: some of its bits are base64 padding that decoding ignores.
        for index in [0, sealed.count / 2, sealed.count - 2] {
            var bytes = Array(sealed)
            bytes[index] = bytes[index] == "A" ? "B" : "A"
            #expect(sealer.open(String(bytes), as: Value.self, context: "c") == nil, "changed at \(index)")
        }
        #expect(sealer.open(String(sealed.dropLast()), as: Value.self, context: "c") == nil)
        #expect(sealer.open("", as: Value.self, context: "c") == nil)
        #expect(sealer.open("%%%", as: Value.self, context: "c") == nil)
    }

    @Test func keyFileMustHoldThirtyTwoBytes() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sallyport-key-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let good = directory.appendingPathComponent("good").path
        try Data((0..<32).map { UInt8($0) }).base64EncodedString().write(toFile: good, atomically: true, encoding: .utf8)
        _ = try CookieSealer.key(fromFile: good)
        let short = directory.appendingPathComponent("short").path
        try Data([1, 2, 3]).base64EncodedString().write(toFile: short, atomically: true, encoding: .utf8)
        #expect(throws: AuthSetupError.self) { try CookieSealer.key(fromFile: short) }
        #expect(throws: AuthSetupError.self) { try CookieSealer.key(fromFile: directory.appendingPathComponent("missing").path) }
    }

    @Test func requestCookiesAreFoundByExactName() {
        var fields = HTTPFields()
        fields.append(HTTPField(name: .cookie, value: "a=1; __Host-sallyport-corp=xyz; b=2"))
        fields.append(HTTPField(name: .cookie, value: "c=3"))
        #expect(Cookies.value("__Host-sallyport-corp", in: fields) == "xyz")
        #expect(Cookies.value("c", in: fields) == "3")
        #expect(Cookies.value("__Host-sallyport", in: fields) == nil)
        #expect(Cookies.set("n", value: "v", maxAge: 60) == "n=v; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=60")
        #expect(Cookies.clear("n").hasSuffix("Max-Age=0"))
    }
}

@Suite("Chunked session cookies")
struct ChunkedCookieTests {
    func request(from setCookies: [String]) -> HTTPFields {
        let pairs = setCookies.map { String($0.split(separator: ";")[0]) }.filter { !$0.hasSuffix("=") }
        var fields = HTTPFields()
        fields.append(HTTPField(name: .cookie, value: pairs.joined(separator: "; ")))
        return fields
    }

    @Test func aLargeValueSpreadsOverSeveralCookiesAndJoinsAgain() throws {
        let value = String(repeating: "abcdefghij", count: 1000)  // 10 000 bytes: three cookies
        let cookies = try #require(Cookies.setChunked("s", value: value, maxAge: 60))
        #expect(cookies.count == 3)
        #expect(cookies.allSatisfy { $0.split(separator: ";")[0].utf8.count < 4000 })
        #expect(Cookies.chunkedValue("s", in: request(from: cookies)) == value)
        #expect(Cookies.chunkedValue("s", in: request(from: Array(cookies.dropLast()))) == nil, "a missing part is no session")
    }

    @Test func aShorterValueClearsTheOldTail() throws {
        let long = try #require(Cookies.setChunked("s", value: String(repeating: "x", count: 9000), maxAge: 60))
        let short = try #require(Cookies.setChunked("s", value: "tiny", maxAge: 60, replacing: request(from: long)))
        #expect(short.first == Cookies.set("s", value: "1~tiny", maxAge: 60))
        #expect(short.dropFirst().sorted() == [Cookies.clear("s.1"), Cookies.clear("s.2")])
        #expect(Cookies.setChunked("s", value: String(repeating: "x", count: 40_000), maxAge: 60) == nil)
    }
}

@Suite("Token claims")
struct TokenVerifierTests {
    let verifier = TokenVerifier(
        issuers: ["https://issuer.test"], audiences: ["relay"], clockSkew: .seconds(60),
        mapping: ClaimMapping(keep: ["department", "level"]), provider: "corp"
    )

    func claims(_ extra: [String: JSONValue] = [:], expiresIn: Double = 300) -> TokenClaims {
        let now = Date().timeIntervalSince1970
        var all: [String: JSONValue] = [
            "iss": .string("https://issuer.test"), "sub": .string("s-1"), "aud": .array([.string("relay")]),
            "exp": .number(now + expiresIn), "iat": .number(now), "preferred_username": .string("alice@corp.test"),
            "groups": .array([.string("staff"), .string("payroll")]), "department": .string("finance"), "level": .number(3),
        ]
        for (key, value) in extra { all[key] = value }
        return TokenClaims(all: all)
    }

    @Test func acceptsAGoodTokenAndMapsTheIdentity() throws {
        try verifier.check(claims())
        let identity = try verifier.identity(from: claims())
        #expect(identity.userPrincipalName == "alice@corp.test", "upn missing: preferred_username is next")
        #expect(identity.groups == ["staff", "payroll"])
        #expect(identity.claims == ["department": ["finance"], "level": ["3"]])
        #expect(identity.provider == "corp")
        #expect(try verifier.identity(from: claims(["upn": .string("a@corp.example")])).userPrincipalName == "a@corp.example")
    }

    @Test func anUnverifiedEmailNeverNamesTheUser() throws {
        var all = claims().all.filter { $0.key != "preferred_username" }
        all["email"] = .string("ceo@corp.test")
        all["email_verified"] = .bool(true)
        #expect(try verifier.identity(from: TokenClaims(all: all)).userPrincipalName == "ceo@corp.test")
        all["email_verified"] = .bool(false)
        #expect(throws: AuthFailure.self) { try verifier.identity(from: TokenClaims(all: all)) }
    }

    @Test func refusesWrongIssuerAudienceLifetimeAndNonce() {
        #expect(throws: AuthFailure.wrongIssuer("https://evil.test")) { try verifier.check(claims(["iss": .string("https://evil.test")])) }
        #expect(throws: AuthFailure.wrongAudience) { try verifier.check(claims(["aud": .string("other")])) }
        #expect(throws: AuthFailure.expired) { try verifier.check(claims(expiresIn: -61)) }
        #expect(throws: Never.self) { try verifier.check(claims(expiresIn: -30)) }  // within the clock skew
        #expect(throws: AuthFailure.notYetValid) { try verifier.check(claims(["nbf": .number(Date().timeIntervalSince1970 + 600)])) }
        #expect(throws: AuthFailure.missingClaim("exp")) { try verifier.check(TokenClaims(all: claims().all.filter { $0.key != "exp" })) }
        #expect(throws: AuthFailure.nonceMismatch) { try verifier.check(claims(["nonce": .string("a")]), nonce: "b") }
        #expect(throws: AuthFailure.nonceMismatch) { try verifier.check(claims(), nonce: "b") }
        #expect(throws: AuthFailure.missingClaim("upn or preferred_username or email")) {
            try verifier.identity(from: TokenClaims(all: claims().all.filter { $0.key != "preferred_username" }))
        }
    }
}

@Suite("Sign-in decisions")
struct SignInDecisionTests {
    func request(_ method: HTTPRequest.Method = .get, _ fields: [(HTTPField.Name, String)] = []) -> HTTPRequest {
        var request = HTTPRequest(method: method, scheme: "https", authority: "app.example", path: "/")
        for (name, value) in fields { request.headerFields.append(HTTPField(name: name, value: value)) }
        return request
    }

    @Test func browsersAreRedirectedAndAPIClientsAreNot() {
        #expect(PreAuthenticator.isBrowserNavigation(request(.get, [(.accept, "text/html,application/xhtml+xml")])))
        #expect(PreAuthenticator.isBrowserNavigation(request(.get, [(.accept, "*/*")])))
        #expect(!PreAuthenticator.isBrowserNavigation(request(.get, [(.accept, "application/json")])))
        #expect(!PreAuthenticator.isBrowserNavigation(request(.get, [(.authorization, "Bearer x")])))
        #expect(!PreAuthenticator.isBrowserNavigation(request(.get, [(HTTPField.Name("X-Requested-With")!, "XMLHttpRequest")])))
        #expect(!PreAuthenticator.isBrowserNavigation(request(.post, [(.accept, "text/html")])))
    }

    @Test func relayCookiesNeverReachTheBackend() {
        var fields = HTTPFields()
        fields.append(HTTPField(name: .cookie, value: "theme=dark; __Host-sallyport-corp=1~abc; lang=en"))
        fields.append(HTTPField(name: .cookie, value: "__Host-sallyport-corp.1=def"))
        fields.append(HTTPField(name: .cookie, value: "a=b"))
        RelayNamespace.removeCookies(fromRequest: &fields)
        #expect(fields[values: .cookie] == ["theme=dark; lang=en", "a=b"])
    }

    @Test func signOutMustComeFromTheSameSite() {
        #expect(PreAuthenticator.isSameOrigin(request(.post, [(HTTPField.Name("Sec-Fetch-Site")!, "same-origin")]), authority: "app.example"))
        #expect(!PreAuthenticator.isSameOrigin(request(.post, [(HTTPField.Name("Sec-Fetch-Site")!, "cross-site")]), authority: "app.example"))
        #expect(PreAuthenticator.isSameOrigin(request(.post, [(HTTPField.Name("Origin")!, "https://App.Example")]), authority: "app.example"))
        #expect(!PreAuthenticator.isSameOrigin(request(.post, [(HTTPField.Name("Origin")!, "https://evil.example")]), authority: "app.example"))
        #expect(!PreAuthenticator.isSameOrigin(request(.post), authority: "app.example"))
    }

    @Test func returnPathsStayOnTheHost() {
        #expect(PreAuthenticator.safeReturnPath("/reports?q=1") == "/reports?q=1")
        #expect(PreAuthenticator.safeReturnPath("//evil.example/") == "/")
        #expect(PreAuthenticator.safeReturnPath("/\\evil.example/") == "/")
        #expect(PreAuthenticator.safeReturnPath("https://evil.example/") == "/")
        #expect(PreAuthenticator.safeReturnPath("/.sallyport/auth/callback?code=x") == "/")
    }

    @Test func pkceChallengeIsTheSHA256OfTheVerifier() {
        // RFC 7636, appendix B.
        #expect(OIDCClient.challenge(for: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        let (verifier, challenge) = OIDCClient.pkce()
        #expect(verifier.count == 43)
        #expect(challenge == OIDCClient.challenge(for: verifier))
        #expect(OIDCClient.pkce().verifier != verifier)
    }

    @Test func formEncodingEscapesEverythingButUnreserved() {
        #expect(FormEncoding.encode([URLQueryItem(name: "scope", value: "openid email"), URLQueryItem(name: "s", value: "a+b/c=d&e")])
            == "scope=openid%20email&s=a%2Bb%2Fc%3Dd%26e")
    }

    @Test func tokenKeyIDIsReadFromTheHeader() async throws {
        let keys = JWTKeyCollection()
        await keys.add(ecdsa: ES256PrivateKey(), kid: "k1")
        struct Payload: JWTPayload {
            var sub: String
            func verify(using algorithm: some JWTAlgorithm) async throws {}
        }
        let token = try await keys.sign(Payload(sub: "x"), kid: "k1")
        #expect(KeySet.keyID(of: token) == "k1")
        #expect(KeySet.keyID(of: "garbage") == nil)
    }
}

/// Before, a key published without `alg` (as Entra ID publishes them) took the algorithm of the first token
/// checked with it: one unauthenticated PS512 token with a real kid made every RS256 token fail for an hour.
@Suite struct KeyAlgorithmPinningTests {
    struct Payload: JWTPayload {
        var sub: String
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    @Test func aKeyWithoutAlgIsPinnedByItsTypeNeverByAToken() async throws {
        let key = try Insecure.RSA.PrivateKey(backing: _RSA.Signing.PrivateKey(keySize: .bits2048))
        let (modulus, exponent) = try key.publicKey.getKeyPrimitives()
        let jwks = #"{"keys":[{"kty":"RSA","kid":"k1","use":"sig","n":"\#(Base64URLText.encode(modulus))","e":"\#(Base64URLText.encode(exponent))"}]}"#
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("jwks-\(UUID()).json").path
        try jwks.write(toFile: file, atomically: true, encoding: String.Encoding.utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let keySet = KeySet(source: .file(file), client: HTTPClient.shared, logger: Logger(label: "test"))

        let signing = JWTKeyCollection()
        await signing.add(rsa: key, digestAlgorithm: .sha256, kid: "k1")
        let genuine = try await signing.sign(Payload(sub: "alice"), kid: "k1")
        let pss = JWTKeyCollection()
        await pss.add(pss: key, digestAlgorithm: .sha512, kid: "k1")
        let otherAlgorithm = try await pss.sign(Payload(sub: "mallory"), kid: "k1")

        await #expect(throws: AuthFailure.badSignature) { try await keySet.verify(otherAlgorithm) }
        let claims = try await keySet.verify(genuine)
        #expect(claims.string("sub") == "alice", "a genuine RS256 token still verifies after a PS512 one")
        await #expect(throws: AuthFailure.badSignature) { try await keySet.verify(otherAlgorithm) }
    }

    @Test func anAttackersIssuerCannotBreakTheChallengeHeader() {
        let description = AuthFailure.wrongIssuer("evil\\\"\r\nSet-Cookie: x=1").description
        let page = Pages.unauthorized(realm: "app", error: description)
        let challenge = page.headerFields[.wwwAuthenticate] ?? ""
        #expect(!challenge.contains("\r") && !challenge.contains("\n") && !challenge.contains("\\"), "\(challenge)")
        #expect(challenge.hasSuffix("is not trusted\""), "the quoted description ends where it should: \(challenge)")
    }

    @Test func pinnedAlgorithmsFollowTheKeyType() throws {
        func jwk(_ json: String) throws -> JWK { try JSONDecoder().decode(JWK.self, from: Data(json.utf8)) }
        #expect(KeySet.pinnedAlgorithm(of: try jwk(#"{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}"#)) == .rs256)
        #expect(KeySet.pinnedAlgorithm(of: try jwk(#"{"kty":"RSA","kid":"a","alg":"PS256","n":"AQAB","e":"AQAB"}"#)) == .ps256)
        #expect(KeySet.pinnedAlgorithm(of: try jwk(#"{"kty":"EC","kid":"a","crv":"P-384","x":"AA","y":"AA"}"#)) == .es384)
        #expect(KeySet.pinnedAlgorithm(of: try jwk(#"{"kty":"OKP","kid":"a","crv":"Ed25519","x":"AA"}"#)) == .eddsa)
        #expect(KeySet.pinnedAlgorithm(of: try jwk(#"{"kty":"RSA","kid":"a","alg":"RSA-OAEP","n":"AQAB","e":"AQAB"}"#)) == nil, "an encryption key")
        #expect(KeySet.pinnedAlgorithm(of: try jwk(#"{"kty":"EC","kid":"a","alg":"RS256","crv":"P-256","x":"AA","y":"AA"}"#)) == nil, "alg and type disagree")
        // The provider's `algorithms`: the first its key type can use; a key whose own alg is not listed is not used.
        let rsa = try jwk(#"{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}"#)
        #expect(KeySet.pinnedAlgorithm(of: rsa, allowed: ["ES256", "PS256"]) == .ps256)
        #expect(KeySet.pinnedAlgorithm(of: rsa, allowed: ["ES256"]) == nil)
        #expect(KeySet.pinnedAlgorithm(of: try jwk(#"{"kty":"RSA","kid":"a","alg":"RS512","n":"AQAB","e":"AQAB"}"#), allowed: ["RS256"]) == nil)
    }
}

/// Base64url without padding, for building test key sets.
enum Base64URLText {
    static func encode(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}

@Suite struct ReplayCacheTests {
    @Test func aStateIsUsableOnceWithinItsLifetime() {
        var cache = ReplayCache(lifetime: 600)
        let start = Date()
        var verdicts: [Bool] = []
        for (state, offset) in [("a", 0.0), ("a", 599), ("b", 300), ("c", 601)] { verdicts.append(cache.consume(state, now: start.addingTimeInterval(offset))) }
        // The second "a" is a replay; after its lifetime a state is forgotten (its sealed cookie has expired too).
        #expect(verdicts == [true, false, true, true])
        #expect(cache.count == 2)
    }

    /// Before, more than 10,000 states under way made every sign-in filter the whole cache under its lock.
    @Test func manySignInsStayBoundedAndCheap() {
        var cache = ReplayCache(lifetime: 600, capacity: 50_000)
        let start = Date()
        var refused = 0
        for index in 0..<200_000 where !cache.consume("s\(index)", now: start.addingTimeInterval(Double(index) / 100)) { refused += 1 }
        #expect(refused == 0)
        // 100 per second for 2,000 s: at most 600 s worth (60,000) would be held; the capacity keeps 50,000.
        #expect(cache.count == 50_000)
        let replayed = cache.consume("s199999", now: start.addingTimeInterval(2_000))
        #expect(!replayed)
    }
}

/// A bearer token's signature is checked once; everything else on every request.
@Suite struct VerifiedTokenTests {
    struct Payload: JWTPayload {
        var iss: String
        var sub: String
        var aud: [String]
        var exp: Int
        var upn: String
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    @Test func aRememberedTokenIsForgottenAfterItsAgeAndTheCacheStaysBounded() {
        let tokens = VerifiedTokens(capacity: 3, maximumAge: .seconds(10))
        let start = ContinuousClock.now
        let claims = TokenClaims(all: ["sub": .string("alice")])
        tokens.remember(claims, of: "a", generation: 7, now: start)
        #expect(tokens.entry(of: "a", now: start + .seconds(9))?.claims.string("sub") == "alice")
        #expect(tokens.entry(of: "a", now: start + .seconds(9))?.generation == 7, "the key set it was verified under")
        #expect(tokens.entry(of: "a", now: start + .seconds(10)) == nil, "older than maximumAge: the signature is checked again")
        #expect(tokens.entry(of: "b", now: start) == nil)
        for name in ["a", "b", "c", "d", "e"] { tokens.remember(claims, of: name, generation: 1, now: start) }
        #expect(tokens.count <= 3)
    }

    @Test func theCacheNeverLetsAnExpiredForgedOrAlteredTokenIn() async throws {
        let key = ES256PrivateKey()
        let parameters = try #require(key.publicKey.parameters)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("jwks-\(UUID()).json").path
        try #"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"\#(parameters.x)","y":"\#(parameters.y)"}]}"#
            .write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let provider = JWTProvider(
            name: "api", settings: JWTSettings(issuers: [.init(issuer: "https://issuer.test", keys: .file(file))], audiences: ["app"]),
            claims: ClaimMapping(), clockSkew: .zero, algorithms: nil, client: HTTPClient.shared, logger: Logger(label: "test")
        )
        let signing = JWTKeyCollection()
        await signing.add(ecdsa: key, kid: "k1")
        let now = Int(Date().timeIntervalSince1970)
        func token(expiresIn: Int) async throws -> String {
            try await signing.sign(Payload(iss: "https://issuer.test", sub: "s", aud: ["app"], exp: now + expiresIn, upn: "alice@corp.test"), kid: "k1")
        }

        let good = try await token(expiresIn: 300)
        #expect(try await provider.authenticate(token: good).userPrincipalName == "alice@corp.test")
        #expect(try await provider.authenticate(token: good).userPrincipalName == "alice@corp.test", "served from the cache")
        #expect(provider.verified.count == 1)

        // Lifetime is checked on every request, cached or not.
        let expired = try await token(expiresIn: -5)
        await #expect(throws: AuthFailure.expired) { try await provider.authenticate(token: expired) }
        await #expect(throws: AuthFailure.expired) { try await provider.authenticate(token: expired) }

        // A forged signature is never remembered, and a token differing from a remembered one by a byte is not it.
        let forged = good.dropLast(4) + (good.hasSuffix("AAAA") ? "BBBB" : "AAAA")
        let before = provider.verified.count
        await #expect(throws: AuthFailure.badSignature) { try await provider.authenticate(token: String(forged)) }
        await #expect(throws: AuthFailure.badSignature) { try await provider.authenticate(token: String(forged)) }
        #expect(provider.verified.count == before)
    }
}
