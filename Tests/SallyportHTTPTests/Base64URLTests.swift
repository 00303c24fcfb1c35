import Foundation
import SallyportHTTP
import Testing

@Suite struct Base64URLTests {
    /// Every length and byte value round-trips, in the URL alphabet without padding, as RFC 4648 §5 has it.
    @Test func roundTripsInTheURLAlphabet() throws {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<70 {
            let data = Data((0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) })
            let text = Base64URL.encode(data)
            #expect(!text.contains("+") && !text.contains("/") && !text.contains("="), "\(text)")
            let standard = data.base64EncodedString()
            #expect(text == String(standard.map { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 }.filter { $0 != "=" }))
            #expect(Base64URL.decode(text) == data)
            #expect(Base64URL.decode(text + String(repeating: "=", count: (4 - text.count % 4) % 4)) == data, "padding is optional")
        }
        #expect(Base64URL.encode(Data([0xFB, 0xFF])) == "-_8")
        #expect(Base64URL.decode("-_8") == Data([0xFB, 0xFF]))
        #expect(Base64URL.decode("not base64!") == nil)
        #expect(Base64URL.decode("a") == nil, "one character is no byte")
    }
}
