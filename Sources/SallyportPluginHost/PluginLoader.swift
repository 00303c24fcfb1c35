#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
public import SallyportPluginAPI
public import SallyportSSO

/// Loads SSO handler plugins (`*.so`) from a directory into a handler catalog.
///
/// A plugin is native code in this process: it must be built against this Sallyport's plugin API with the same
/// Swift compiler (checked through its `sallyport_plugin_abi` right after the library loads, before any of its
/// handler code runs; a plugin that needs API symbols this connector lacks already fails to load). A plugin that
/// cannot be loaded is reported and skipped; the apps that use its handlers answer 502, all others work.
/// Libraries are never unloaded: the Swift runtime keeps their type records for the life of the process.
public enum PluginLoader {
    /// A plugin that loaded.
    public struct Loaded: Sendable {
        /// The library file.
        public var path: String
        /// The plugin's own name and version.
        public var name: String
        public var version: String
        /// The handler names it added.
        public var handlers: [String]
        /// Whether it runs in a plugin host process (else in the connector itself).
        public var isolated = false
    }

    /// A plugin (or one of its handlers) that did not load, and why.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        /// The library file.
        public var path: String
        /// What went wrong and what to do.
        public var reason: String
        public var description: String { "\(path): \(reason)" }
    }

    /// The outcome of loading a directory.
    public struct Result: Sendable {
        /// The built-in handlers plus every plugin handler that loaded.
        public var catalog: HandlerCatalog
        public var loaded: [Loaded]
        public var failures: [Failure]
    }

    /// The library plugins link against; loaded first so each plugin's dependency on it resolves to the copy
    /// installed next to `sallyport`, whose symbols the executable itself provides.
    static let apiLibrary = "libSallyportPluginAPI.so"

    /// The plugin libraries in `directory`: every `*.so` but the API library, sorted by name.
    public static func libraries(in directory: String) -> Swift.Result<[String], Failure> {
        do {
            let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".so") && $0 != apiLibrary }.sorted()
            return .success(files)
        } catch {
            return .failure(Failure(path: directory, reason: "cannot read the plugins directory: \(error.localizedDescription)"))
        }
    }

    /// Loads one plugin library into this process, the API library first.
    public static func loadLibrary(path: String) -> Swift.Result<PluginRegistration, Failure> {
        if dlopen(apiLibrary, RTLD_NOW | RTLD_LOCAL) == nil {
            return .failure(Failure(path: path, reason: "\(apiLibrary) was not found next to the sallyport executable (\(lastError())); install it with sallyport"))
        }
        return self.loadOne(path: path)
    }

    /// Loads every `*.so` in `directory` (sorted by name) into this process, on top of the built-in handlers.
    public static func load(directory: String, into base: HandlerCatalog = .builtIn) -> Result {
        var result = Result(catalog: base, loaded: [], failures: [])
        let files: [String]
        switch self.libraries(in: directory) {
        case .success(let found): files = found
        case .failure(let failure):
            result.failures.append(failure)
            return result
        }
        for file in files {
            let path = directory + "/" + file
            switch self.loadLibrary(path: path) {
            case .failure(let failure):
                result.failures.append(failure)
            case .success(let registration):
                var added: [String] = []
                for factory in registration.factories {
                    guard Self.isValidName(factory.name) else {
                        result.failures.append(Failure(path: path, reason: "handler name \"\(factory.name)\" is not lowercase letters, digits and -; skipped"))
                        continue
                    }
                    if result.catalog.add(factory, plugin: registration.name) {
                        added.append(factory.name)
                    } else {
                        result.failures.append(Failure(path: path, reason: "handler \"\(factory.name)\" is already provided (built in or by an earlier plugin); skipped"))
                    }
                }
                result.loaded.append(Loaded(path: path, name: registration.name, version: registration.version, handlers: added))
            }
        }
        return result
    }

    private typealias ABIFunction = @convention(c) () -> Int64
    private typealias EntryFunction = @convention(c) () -> UnsafeMutableRawPointer?

    static func loadOne(path: String) -> Swift.Result<PluginRegistration, Failure> {
        // RTLD_NOW: a missing symbol fails here, cleanly, not at some later call.
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let error = lastError()
            let hint = error.contains("undefined symbol: $s18SallyportPluginAPI")
                ? "; it was built against another Sallyport plugin API (this connector has \(PluginABI.describe(PluginABI.stamp))): \(Self.rebuild)" : ""
            return .failure(Failure(path: path, reason: "cannot load: \(error)\(hint)"))
        }
        guard let abiSymbol = dlsym(handle, "sallyport_plugin_abi") else {
            return .failure(Failure(path: path, reason: "not a Sallyport plugin (no sallyport_plugin_abi symbol)"))
        }
        let stamp = unsafeBitCast(abiSymbol, to: ABIFunction.self)()
        guard stamp == PluginABI.stamp else {
            return .failure(
                Failure(
                    path: path,
                    reason: "built for \(PluginABI.describe(stamp)), but this connector has \(PluginABI.describe(PluginABI.stamp)); \(Self.rebuild)"
                )
            )
        }
        guard let entrySymbol = dlsym(handle, "sallyport_plugin_entry") else {
            return .failure(Failure(path: path, reason: "has no sallyport_plugin_entry symbol"))
        }
        guard let raw = unsafeBitCast(entrySymbol, to: EntryFunction.self)() else {
            return .failure(Failure(path: path, reason: "its entry point declined to register"))
        }
        return .success(Unmanaged<PluginRegistration>.fromOpaque(raw).takeRetainedValue())
    }

    /// What to do about a plugin built for another API or compiler.
    static let rebuild =
        "rebuild the plugin against this Sallyport version with the same Swift toolchain (in the plugin's package: point its sallyport dependency at this version, then swift build -c release; docs/plugins.md, \"Upgrading a plugin\")"

    static func isValidName(_ name: String) -> Bool { HandlerCatalog.isValidName(name) }

    private static func lastError() -> String {
        dlerror().map { String(cString: $0) } ?? "unknown error"
    }
}
