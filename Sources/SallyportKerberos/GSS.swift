import CGSSAPI
import CSallyportGSS

/// A failed GSS-API call: which call, and the mechanism's own words (as `gss_display_status` gives them).
public struct GSSError: Error, Sendable, CustomStringConvertible {
    /// The GSS-API function that failed, e.g. `gss_acquire_cred_impersonate_name`.
    public var operation: String
    /// GSS major status.
    public var major: UInt32
    /// Mechanism (Kerberos) minor status; often a krb5 error code.
    public var minor: UInt32
    /// The major and minor statuses as text.
    public var message: String

    public var description: String { "\(operation): \(message)" }

    /// A status with its text already known.
    init(operation: String, major: UInt32, minor: UInt32, message: String) {
        self.operation = operation
        self.major = major
        self.minor = minor
        self.message = message
    }

    init(_ operation: String, major: OM_uint32, minor: OM_uint32) {
        self.operation = operation
        self.major = major
        self.minor = minor
        var parts = GSSError.display(major, type: GSS_C_GSS_CODE)
        if minor != 0 { parts += GSSError.display(minor, type: GSS_C_MECH_CODE) }
        self.message = parts.joined(separator: "; ")
    }

    static func display(_ status: OM_uint32, type: Int32) -> [String] {
        var lines: [String] = []
        var context: OM_uint32 = 0
        repeat {
            var minor: OM_uint32 = 0
            var buffer = gss_buffer_desc()
            let major = gss_display_status(&minor, status, type, nil, &context, &buffer)
            if csallyport_gss_is_error(major) != 0 { break }
            if let value = buffer.value {
                // Some mechanisms count a trailing NUL in the length.
                let text = String(decoding: UnsafeRawBufferPointer(start: value, count: buffer.length), as: UTF8.self)
                lines.append(String(text.prefix { $0 != "\0" }))
            }
            gss_release_buffer(&minor, &buffer)
        } while context != 0
        return lines
    }
}

/// Which GSS-API mechanism a credential and its tokens use.
public enum GSSMechanism: Sendable, Hashable {
    /// Raw Kerberos 5 (an AP-REQ in the token).
    case kerberos
    /// SPNEGO wrapping Kerberos: what browsers send as `Negotiate`.
    case spnego

    var oid: gss_OID {
        switch self {
        case .kerberos: csallyport_gss_mech_krb5()
        case .spnego: csallyport_gss_mech_spnego()
        }
    }
}

/// Calls `body` with a one-element OID set for `mechanism`, released afterwards.
func withMechanismSet<T>(_ mechanism: GSSMechanism, _ body: (gss_OID_set) throws -> T) throws -> T {
    var minor: OM_uint32 = 0
    var set: gss_OID_set?
    var major = gss_create_empty_oid_set(&minor, &set)
    guard csallyport_gss_is_error(major) == 0, let created = set else { throw GSSError("gss_create_empty_oid_set", major: major, minor: minor) }
    defer { gss_release_oid_set(&minor, &set) }
    major = gss_add_oid_set_member(&minor, mechanism.oid, &set)
    guard csallyport_gss_is_error(major) == 0 else { throw GSSError("gss_add_oid_set_member", major: major, minor: minor) }
    return try body(created)
}

/// A Kerberos principal name, imported as written: no DNS canonicalisation on the request path.
public final class GSSName: @unchecked Sendable {
    let handle: gss_name_t
    /// The principal as given.
    public let principal: String

    /// Imports `principal`, e.g. `alice@CORP.EXAMPLE.TEST` or `HTTP/app.corp.example.test@CORP.EXAMPLE.TEST`
    /// (without `@REALM`: the default realm).
    public convenience init(principal: String) throws {
        try self.init(principal, type: csallyport_gss_nt_krb5_principal())
    }

    /// Imports a user principal name as an enterprise name (`alice@example.com`), which the KDC maps to the
    /// account whatever the UPN suffix (one extra AS exchange to find the user's realm).
    public convenience init(enterprise upn: String) throws {
        try self.init(upn, type: csallyport_gss_nt_enterprise())
    }

    private init(_ principal: String, type: gss_OID) throws {
        var minor: OM_uint32 = 0
        var name: gss_name_t?
        var bytes = Array(principal.utf8)
        let major = bytes.withUnsafeMutableBytes { raw -> OM_uint32 in
            var buffer = gss_buffer_desc(length: raw.count, value: raw.baseAddress)
            return gss_import_name(&minor, &buffer, type, &name)
        }
        guard csallyport_gss_is_error(major) == 0, let name else { throw GSSError("gss_import_name(\(principal))", major: major, minor: minor) }
        self.handle = name
        self.principal = principal
    }

    /// A name the library made (owned from now on), with its display form.
    init(taking handle: gss_name_t) {
        self.handle = handle
        var minor: OM_uint32 = 0
        var buffer = gss_buffer_desc()
        var text = ""
        if csallyport_gss_is_error(gss_display_name(&minor, handle, &buffer, nil)) == 0, let value = buffer.value {
            text = String(decoding: UnsafeRawBufferPointer(start: value, count: buffer.length), as: UTF8.self)
        }
        gss_release_buffer(&minor, &buffer)
        self.principal = text
    }

    deinit {
        var minor: OM_uint32 = 0
        var handle: gss_name_t? = self.handle
        gss_release_name(&minor, &handle)
    }
}

/// A GSS credential handle: the connector's own (from its keytab) or one impersonating a user (S4U2Self).
///
/// Calls that may reach the KDC block: run them off the event loops.
public final class GSSCredential: @unchecked Sendable {
    let handle: gss_cred_id_t
    /// The mechanism the credential was acquired for; its tokens must use the same.
    public let mechanism: GSSMechanism

    private init(handle: gss_cred_id_t, mechanism: GSSMechanism) {
        self.handle = handle
        self.mechanism = mechanism
    }

    deinit {
        var minor: OM_uint32 = 0
        var handle: gss_cred_id_t? = self.handle
        gss_release_cred(&minor, &handle)
    }

    /// The connector's initiator credential from a keytab; its TGT is obtained (and renewed) into `ccache`
    /// (e.g. `MEMORY:sallyport`) by the Kerberos library as needed.
    /// With `principal` nil, the keytab's first principal is used.
    public static func fromKeytab(_ keytab: String, principal: String?, ccache: String, mechanism: GSSMechanism) throws -> GSSCredential {
        let name = try principal.map { try GSSName(principal: $0) }
        return try withMechanismSet(mechanism) { mechanisms in
            var minor: OM_uint32 = 0
            var credential: gss_cred_id_t?
            let major = "client_keytab".withCString { keytabKey in
                keytab.withCString { keytabValue in
                    "ccache".withCString { ccacheKey in
                        ccache.withCString { ccacheValue in
                            var elements = [
                                gss_key_value_element_desc(key: keytabKey, value: keytabValue),
                                gss_key_value_element_desc(key: ccacheKey, value: ccacheValue),
                            ]
                            return elements.withUnsafeMutableBufferPointer { buffer -> OM_uint32 in
                                var store = gss_key_value_set_desc(count: OM_uint32(buffer.count), elements: buffer.baseAddress)
                                return gss_acquire_cred_from(
                                    &minor, name?.handle ?? csallyport_gss_no_name(), csallyport_gss_indefinite(), mechanisms, gss_cred_usage_t(GSS_C_INITIATE),
                                    &store, &credential, nil, nil
                                )
                            }
                        }
                    }
                }
            }
            guard csallyport_gss_is_error(major) == 0, let credential else {
                throw GSSError("gss_acquire_cred_from(keytab \(keytab), \(principal ?? "its first principal"))", major: major, minor: minor)
            }
            return GSSCredential(handle: credential, mechanism: mechanism)
        }
    }

    /// A credential for `user`, obtained by protocol transition (S4U2Self) with this credential. The
    /// service ticket for the app (S4U2Proxy) is obtained when the first context is initiated with it.
    public func impersonate(_ user: GSSName) throws -> GSSCredential {
        try withMechanismSet(self.mechanism) { mechanisms in
            var minor: OM_uint32 = 0
            var credential: gss_cred_id_t?
            let major = gss_acquire_cred_impersonate_name(
                &minor, self.handle, user.handle, csallyport_gss_indefinite(), mechanisms, gss_cred_usage_t(GSS_C_INITIATE), &credential, nil, nil
            )
            guard csallyport_gss_is_error(major) == 0, let credential else {
                throw GSSError("gss_acquire_cred_impersonate_name(\(user.principal))", major: major, minor: minor)
            }
            return GSSCredential(handle: credential, mechanism: self.mechanism)
        }
    }

    /// The principal the credential belongs to, e.g. `sallyport-conn@CORP.EXAMPLE.TEST`.
    public func name() throws -> String {
        var minor: OM_uint32 = 0
        var name: gss_name_t?
        let major = gss_inquire_cred(&minor, self.handle, &name, nil, nil, nil)
        guard csallyport_gss_is_error(major) == 0, let name else { throw GSSError("gss_inquire_cred", major: major, minor: minor) }
        return GSSName(taking: name).principal
    }

    /// One Kerberos ticket the credential holds.
    public struct Ticket: Sendable, Equatable {
        /// The ticket's server, e.g. `krbtgt/CORP.EXAMPLE.TEST@CORP.EXAMPLE.TEST`.
        public var server: String
        /// The krb5 ticket flags.
        public var flags: Int32
        /// The KDC marked it forwardable: a TGT without it gives no forwardable S4U2Self ticket, and an S4U2Self
        /// ticket without it is no evidence for classic constrained delegation (S4U2Proxy).
        public var isForwardable: Bool { flags & csallyport_ticket_flag_forwardable() != 0 }
        /// A ticket-granting ticket.
        public var isTGT: Bool { server.hasPrefix("krbtgt/") }
    }

    /// The tickets the credential holds now (a connector's: its TGT; an impersonated user's: the S4U2Self
    /// ticket, and the TGT behind it). Reads flags only; no KDC traffic.
    public func tickets() throws -> [Ticket] {
        var buffer = [csallyport_ticket](repeating: csallyport_ticket(), count: 16)
        var code: Int32 = 0
        let count = buffer.withUnsafeMutableBufferPointer { csallyport_gss_cred_tickets(self.handle, $0.baseAddress, Int32($0.count), &code) }
        guard count >= 0 else { throw GSSError("gss_krb5_copy_ccache", major: csallyport_gss_failure(), minor: OM_uint32(bitPattern: code)) }
        return buffer.prefix(Int(count)).map { ticket in
            var server = ticket.server
            let name = withUnsafeBytes(of: &server) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            return Ticket(server: name, flags: ticket.flags)
        }
    }

    /// Seconds until the credential expires (0 when it has).
    public func remainingLifetime() throws -> UInt32 {
        var minor: OM_uint32 = 0
        var lifetime: OM_uint32 = 0
        let major = gss_inquire_cred(&minor, self.handle, nil, &lifetime, nil, nil)
        guard csallyport_gss_is_error(major) == 0 else { throw GSSError("gss_inquire_cred", major: major, minor: minor) }
        return lifetime
    }
}

/// One security context from the connector (initiator) to a backend service.
public final class GSSInitiator: @unchecked Sendable {
    private var handle: gss_ctx_id_t?
    /// Whether the backend's reply token completed mutual authentication.
    public private(set) var isEstablished = false

    public init() {}

    deinit {
        var minor: OM_uint32 = 0
        if handle != nil { gss_delete_sec_context(&minor, &handle, nil) }
    }

    /// The first token for `target` with `credential` (mutual authentication requested).
    public func firstToken(credential: GSSCredential, target: GSSName) throws -> [UInt8] {
        try self.step(credential: credential, target: target, input: nil) ?? []
    }

    /// Processes the backend's reply token (from `WWW-Authenticate: Negotiate <token>`); throws when it does
    /// not verify. Returns a further token to send, if the mechanism needs one.
    public func verifyReply(_ token: [UInt8], credential: GSSCredential, target: GSSName) throws -> [UInt8]? {
        try self.step(credential: credential, target: target, input: token)
    }

    private func step(credential: GSSCredential, target: GSSName, input: [UInt8]?) throws -> [UInt8]? {
        var minor: OM_uint32 = 0
        var output = gss_buffer_desc()
        var flags: OM_uint32 = 0
        var inputBytes = input ?? []
        let requested = OM_uint32(GSS_C_MUTUAL_FLAG) | OM_uint32(GSS_C_SEQUENCE_FLAG)
        let major = inputBytes.withUnsafeMutableBytes { raw -> OM_uint32 in
            var inputBuffer = gss_buffer_desc(length: input == nil ? 0 : raw.count, value: input == nil ? nil : raw.baseAddress)
            return gss_init_sec_context(
                &minor, credential.handle, &handle, target.handle, credential.mechanism.oid, requested, 0, nil, &inputBuffer, nil, &output, &flags, nil
            )
        }
        defer { gss_release_buffer(&minor, &output) }
        guard csallyport_gss_is_error(major) == 0 else { throw GSSError("gss_init_sec_context(\(target.principal))", major: major, minor: minor) }
        self.isEstablished = csallyport_gss_continue_needed(major) == 0
        guard let value = output.value, output.length > 0 else { return nil }
        return Array(UnsafeRawBufferPointer(start: value, count: output.length))
    }
}
