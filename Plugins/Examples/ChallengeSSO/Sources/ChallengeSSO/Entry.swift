import SallyportPluginAPI

/// The plugin API and compiler this plugin was built with; the connector refuses a mismatch.
@_cdecl("sallyport_plugin_abi")
public func sallyportPluginABI() -> Int64 { PluginABI.stamp }

/// The plugin's handlers.
@_cdecl("sallyport_plugin_entry")
public func sallyportPluginEntry() -> UnsafeMutableRawPointer {
    PluginRegistration(name: "challenge-sso", version: "1.0.0", factories: [ChallengeFactory()]).retainedPointer()
}
