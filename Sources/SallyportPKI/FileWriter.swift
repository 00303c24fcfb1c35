public import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Writes key and certificate files with their mode set from the first byte, so a key is never readable by
/// others, even briefly.
public enum FileWriter {
    /// Replaces `path` whole: a temporary file in the same directory with `mode`, fsync, rename. A reader sees
    /// the old file or the new one, never half of one.
    public static func replace(_ text: String, at path: String, mode: mode_t) throws {
        let temporary = path + ".new-\(getpid())"
        do {
            try self.write(text, to: temporary, mode: mode, flags: O_TRUNC)
        } catch {
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw PKIError(.writeFailed, "cannot write \(path): \(reason)")
        }
    }

    /// Creates `path`, failing if it exists (nothing is ever overwritten).
    public static func create(_ text: String, at path: String, mode: mode_t) throws {
        try self.write(text, to: path, mode: mode, flags: O_EXCL)
    }

    private static func write(_ text: String, to path: String, mode: mode_t, flags: Int32) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | flags, mode)
        guard fd >= 0 else { throw PKIError(.writeFailed, "cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        // A file that already existed keeps its old mode through O_CREAT; set it explicitly.
        guard fchmod(fd, mode) == 0 else { throw PKIError(.writeFailed, "cannot set the mode of \(path): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count, fsync(fd) == 0 else {
            throw PKIError(.writeFailed, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}
