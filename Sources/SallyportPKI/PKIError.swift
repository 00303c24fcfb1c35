/// An error from reading, building or writing certificates.
public struct PKIError: Error, Hashable, CustomStringConvertible {
    /// What went wrong, stable across releases; new codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String

        /// An IP address for a subject alternative name could not be parsed.
        public static let invalidIPAddress = Code(name: "invalidIPAddress")
        /// A file name or common name is unusable (empty, or contains a path separator).
        public static let invalidName = Code(name: "invalidName")
        /// A file or directory could not be written.
        public static let writeFailed = Code(name: "writeFailed")
        /// A file could not be read.
        public static let readFailed = Code(name: "readFailed")
        /// A certificate or key is malformed, or they do not fit together.
        public static let invalidCertificate = Code(name: "invalidCertificate")
        /// A certificate signing request is malformed or not signed by its key.
        public static let invalidRequest = Code(name: "invalidRequest")
        /// A private key that cannot be read or used.
        public static let invalidKey = Code(name: "invalidKey")

        public var description: String { name }
    }

    /// The kind of failure.
    public var code: Code
    /// What failed and, where it helps, what to do about it.
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
