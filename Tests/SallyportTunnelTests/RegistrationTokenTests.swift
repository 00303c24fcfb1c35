import SallyportTunnel
import SallyportWire
import Testing

@Suite("Registration token")
struct RegistrationTokenTests {
    @Test func roundTrips() throws {
        let token = RegistrationToken.generate(pin: String(repeating: "p", count: 43))
        #expect(token.id.count == 10)
        #expect(token.secret.count == 43)
        let text = token.description
        #expect(text.hasPrefix("sp1.\(token.id)."))
        #expect(try RegistrationToken(parsing: "  \(text)\n") == token)
    }

    @Test func tokensDiffer() {
        let pin = String(repeating: "p", count: 43)
        #expect(RegistrationToken.generate(pin: pin) != RegistrationToken.generate(pin: pin))
    }

    @Test(arguments: ["", "garbage", "sp1.abc", "sp2.abcdefghjk.\(String(repeating: "s", count: 43)).\(String(repeating: "p", count: 43))",
        "sp1.abcdefghjk.\(String(repeating: "s", count: 42)).\(String(repeating: "p", count: 43))",
        "sp1.abc def.\(String(repeating: "s", count: 43)).\(String(repeating: "p", count: 43))",
        "sp1..\(String(repeating: "s", count: 43)).\(String(repeating: "p", count: 43))"])
    func malformedTokensSayWhatIsExpected(_ text: String) {
        #expect {
            try RegistrationToken(parsing: text)
        } throws: { error in
            guard let refusal = error as? Registration.Refusal else { return false }
            return refusal.error == "token-malformed" && refusal.message.contains("sallyport connectors token create")
        }
    }
}
