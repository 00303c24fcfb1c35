import SallyportPluginAPI
import Testing

@testable import ChallengeSSO

@Suite struct ChallengeSSOTests {
    let alice = Identity(userPrincipalName: "alice@corp.example", subject: "s", issuer: "https://idp", provider: "corp")

    func context(_ settings: SettingsMap) -> HandlerContext {
        HandlerContext(appName: "test", settings: settings, logger: PluginLogger { _, _, _ in }, metrics: PluginMetrics { _, _, _ in }, blockingExecutor: { $0() })
    }

    @Test func on401SendsNothingFirstThenAnswersTheChallenge() async throws {
        let handler = try ChallengeFactory().makeHandler(context: context(["realm": .string("payroll"), "sendAuthorization": .string("on401")]))
        var first = BackendRequest(method: "GET", path: "/", canRetry: true)
        first.headers.append("authorization", "Basic c3Bvb2Y=")
        #expect(await handler.prepare(&first, identity: alice, attempt: 1) == .proceed)
        #expect(first.headers["Authorization"] == nil)
        var challenge = BackendResponse(status: 401, headers: HeaderFields([.init(name: "WWW-Authenticate", value: "Example realm=payroll")]))
        #expect(await handler.inspect(&challenge, request: first, identity: alice, attempt: 1) == .retry)
        var second = BackendRequest(method: "GET", path: "/")
        _ = await handler.prepare(&second, identity: alice, attempt: 2)
        #expect(second.headers["Authorization"] == "Example realm=payroll, user=alice@corp.example")
        #expect(await handler.inspect(&challenge, request: second, identity: alice, attempt: 2) == .deliver)
    }

    @Test func aRequestThatCannotBeSentAgainGetsTheCredentialsAtOnce() async throws {
        let handler = try ChallengeFactory().makeHandler(context: context(["realm": .string("payroll"), "sendAuthorization": .string("on401")]))
        var post = BackendRequest(method: "POST", path: "/", hasBody: true, canRetry: false)
        _ = await handler.prepare(&post, identity: alice, attempt: 1)
        #expect(post.headers["Authorization"] == "Example realm=payroll, user=alice@corp.example")
        var challenge = BackendResponse(status: 401, headers: HeaderFields([.init(name: "WWW-Authenticate", value: "Example realm=payroll")]))
        #expect(await handler.inspect(&challenge, request: post, identity: alice, attempt: 1) == .deliver)
        #expect(challenge.headers["WWW-Authenticate"] == nil, "a challenge the user cannot answer is not shown")
    }

    @Test func badSettingsAreAllReported() {
        #expect(throws: SettingsErrors([
            SettingsError(key: "realm", message: "required setting is missing"),
            SettingsError(key: "sendAuthorization", message: "must be one of always, on401 (found \"sometimes\")"),
        ])) {
            try ChallengeSettings(context: context(["sendAuthorization": .string("sometimes")]))
        }
    }
}
