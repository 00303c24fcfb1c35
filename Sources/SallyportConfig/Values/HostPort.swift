/// A `host:port` address: "0.0.0.0:443", "[::1]:8443", "relay.example.com:8443".
public struct HostPort: Sendable, Codable, Hashable, CustomStringConvertible {
    /// Lowercased host name or IP address, without brackets.
    public var host: String
    /// The port; 0 only in listen addresses, where it asks the system for a free port.
    public var port: Int

    /// Creates an address from its parts.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`; `allowZeroPort` is for listen addresses. `file` only labels the error.
    public init(parsing text: String, allowZeroPort: Bool = false, file: String = "<input>") throws(ConfigError) {
        switch Self.parse(text, allowZeroPort: allowZeroPort) {
        case .success(let address): self = address
        case .failure(let problem): throw ConfigError(file: file, message: problem.message)
        }
    }

    /// `host:port`, with an IPv6 host in brackets.
    public var description: String { "\(HostSyntax.urlForm(host)):\(port)" }

    static func parse(_ text: String, allowZeroPort: Bool) -> Result<HostPort, HostProblem> {
        let expected = #"must be host:port, like "relay.example.com:8443", "0.0.0.0:443" or "[::1]:8443""#
        var hostText: Substring
        let portText: Substring
        let bracketed = text.hasPrefix("[")
        if bracketed {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                return .failure(HostProblem("\(expected) (got \(quoted(text)))"))
            }
            hostText = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                return .failure(HostProblem("\(expected); the port is missing (got \(quoted(text)))"))
            }
            hostText = text[..<colon]
            portText = text[text.index(after: colon)...]
            if hostText.isEmpty {
                return .failure(HostProblem("\(expected); the host is missing (to listen on every IPv4 interface, write 0.0.0.0\(text))"))
            }
            if hostText.contains(":") {
                return .failure(HostProblem("\(expected); put an IPv6 address in brackets (got \(quoted(text)))"))
            }
        }
        let host: String
        switch HostSyntax.parse(String(hostText), bracketed: bracketed) {
        case .success(let parsed): host = parsed
        case .failure(let problem): return .failure(HostProblem("\(expected); \(problem.message)"))
        }
        guard let port = PortSyntax.parse(portText, allowZero: allowZeroPort) else {
            let range = allowZeroPort ? "0 to 65535" : "1 to 65535"
            return .failure(HostProblem("has an invalid port \(quoted(String(portText))) (expected \(range))"))
        }
        return .success(HostPort(host: host, port: port))
    }
}
