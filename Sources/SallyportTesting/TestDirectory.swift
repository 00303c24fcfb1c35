import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A temporary directory removed at deinit (or by ``remove()``) unless `SALLYPORT_KEEP_TEST_DIRS=1` is set.
///
/// Created under `$TMPDIR` (default `/tmp`) with mode 0700.
public final class TestDirectory: Sendable {
    /// The directory's absolute path.
    public let path: String

    /// Creates a fresh, empty directory whose name starts with `prefix`.
    public init(prefix: String) throws {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/\(prefix)-XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard created != nil else {
            throw HarnessError(.fileSystem, "mkdtemp in \(base) failed: \(String(cString: strerror(errno)))")
        }
        path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    deinit {
        remove()
    }

    /// The path of `name` inside this directory; nothing is created.
    public func file(_ name: String) -> String {
        (path as NSString).appendingPathComponent(name)
    }

    /// Writes `contents` to `name` (creating intermediate directories) and returns its path.
    @discardableResult
    public func write(_ name: String, _ contents: String) throws -> String {
        let target = file(name)
        let parent = (target as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
            try Data(contents.utf8).write(to: URL(fileURLWithPath: target))
        } catch {
            throw HarnessError(.fileSystem, "cannot write \(target): \(error)")
        }
        return target
    }

    /// Deletes the directory and everything in it, unless `SALLYPORT_KEEP_TEST_DIRS=1`. Safe to call twice.
    public func remove() {
        guard ProcessInfo.processInfo.environment["SALLYPORT_KEEP_TEST_DIRS"] != "1" else { return }
        try? FileManager.default.removeItem(atPath: path)
    }
}
