import SallyportPluginAPI
import Testing

@testable import ChallengeSSO

@Suite struct ChallengeSSOTests {
    let alice = Identity(userPrincipalName: "alice@corp.example", subject: "s", issuer: "https://idp", provider: "corp")

    @Test func on401SendsNothingFirstThenAnswersTheChallenge() async throws {
        let handler = ChallengeHandler(settings: try ChallengeSettings(["realm": .string("payroll"), "sendAuthorization": .string("on401")]), logger: PluginLogger { _, _, _ in })
        var first = BackendRequest(method: "GET", path: "/")
        first.headers.append("authorization", "Basic c3Bvb2Y=")
        #expect(await handler.prepare(&first, identity: alice, attempt: 1) == .proceed)
        #expect(first.headers["Authorization"] == nil)
        let challenge = BackendResponse(status: 401, headers: HeaderFields([.init(name: "WWW-Authenticate", value: "Example realm=payroll")]))
        #expect(await handler.inspect(challenge, request: first, identity: alice, attempt: 1) == .retry)
        var second = BackendRequest(method: "GET", path: "/")
        _ = await handler.prepare(&second, identity: alice, attempt: 2)
        #expect(second.headers["Authorization"] == "Example realm=payroll, user=alice@corp.example")
        #expect(await handler.inspect(challenge, request: second, identity: alice, attempt: 2) == .deliver)
    }

    @Test func badSettingsNameTheirKey() {
        #expect(throws: SettingsError.self) { try ChallengeSettings([:]) }
        #expect(throws: SettingsError(key: "sendAuthorization", message: "must be always or on401 (got \"sometimes\")")) {
            try ChallengeSettings(["realm": .string("r"), "sendAuthorization": .string("sometimes")])
        }
    }
}
