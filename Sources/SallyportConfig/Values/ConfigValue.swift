/// A YAML value kept as written, for handler-specific settings that this module does not interpret.
public indirect enum ConfigValue: Sendable, Codable, Hashable {
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case list([ConfigValue])
    case map([String: ConfigValue])
    case null
}
