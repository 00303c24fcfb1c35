import Foundation
public import JWTKit

/// A token issuer a test (or the benchmark) controls: ES256 keys it generates, a JWKS file the relay reads
/// (`jwksFile`) or nginx serves, and rotation.
public final class TestIssuer: @unchecked Sendable {
    public struct Claims: JWTPayload {
        public var iss: String
        public var sub: String
        public var aud: [String]
        public var exp: Int
        public var nbf: Int?
        public var upn: String?
        public var groups: [String]?
        public var department: String?
        public func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    public let issuer: String
    public let jwksFile: String
    public private(set) var keys: [(kid: String, key: ES256PrivateKey)] = []

    public init(issuer: String, jwksFile: String) throws {
        self.issuer = issuer
        self.jwksFile = jwksFile
        try self.rotate()
    }

    /// A new signing key, published first in the JWKS; old keys stay published unless `dropOld`.
    public func rotate(dropOld: Bool = false) throws {
        if dropOld { keys.removeAll() }
        keys.insert((kid: "key-\(UUID().uuidString.prefix(8))", key: ES256PrivateKey()), at: 0)
        let jwks = keys.map { entry -> String in
            let parameters = entry.key.publicKey.parameters!
            return #"{"kty":"EC","crv":"P-256","use":"sig","alg":"ES256","kid":"\#(entry.kid)","x":"\#(parameters.x)","y":"\#(parameters.y)"}"#
        }
        try #"{"keys":[\#(jwks.joined(separator: ","))]}"#.write(toFile: jwksFile, atomically: true, encoding: .utf8)
    }

    public var currentKid: String { keys[0].kid }

    /// A token for `user`, signed with the current key unless another key or kid is given.
    public func token(
        user: String = "alice@corp.example.test",
        groups: [String] = ["staff"],
        audience: String = "sallyport-test",
        issuer: String? = nil,
        expiresIn: Int = 300,
        signingKey: ES256PrivateKey? = nil,
        kid: String? = nil
    ) async throws -> String {
        let now = Int(Date().timeIntervalSince1970)
        let claims = Claims(
            iss: issuer ?? self.issuer, sub: "sub-\(user)", aud: [audience], exp: now + expiresIn, nbf: now - 5,
            upn: user, groups: groups, department: "finance"
        )
        let collection = JWTKeyCollection()
        let kid = JWKIdentifier(string: kid ?? currentKid)
        await collection.add(ecdsa: signingKey ?? keys[0].key, kid: kid)
        return try await collection.sign(claims, kid: kid)
    }
}

