import SallyportHTTP
import Testing

@Suite struct LogTextTests {
    @Test func controlCharactersCannotForgeLogLines() {
        #expect(LogText.escaped("alice\nlevel=error msg=forged") == "alice\\u{a}level=error msg=forged")
        #expect(LogText.escaped("a\r\u{1B}[31mred\u{7F}\u{85}\u{2028}") == "a\\u{d}\\u{1b}[31mred\\u{7f}\\u{85}\\u{2028}")
        #expect(LogText.escaped("naïve café ✓") == "naïve café ✓", "printable text is kept as it is")
    }

    @Test func longTextIsCut() {
        let long = String(repeating: "x", count: 5000)
        #expect(LogText.escaped(long, limit: 10) == "xxxxxxxxxx…(4990 more characters)")
        #expect(LogText.escaped("short", limit: 10) == "short")
    }
}
