import CSallyportGSS
import Glibc

/// A step of obtaining a user's ticket for an app, in the order they happen.
public enum DelegationStep: String, Sendable, CaseIterable {
    /// Reading the connector's keytab.
    case keytab
    /// The connector's own TGT (an AS exchange with the keytab's key).
    case tgt = "TGT"
    /// Protocol transition: a ticket for the user to the connector itself.
    case s4u2self = "S4U2Self"
    /// Constrained delegation: a ticket for the user to the app's SPN.
    case s4u2proxy = "S4U2Proxy"
    /// The Negotiate token for the backend.
    case token
}

/// Why delegation failed, in categories an operator can act on; each names the HTTP status the user gets.
public enum DelegationFailure: String, Sendable, Hashable {
    /// No KDC answered: retry later (503). Users with cached tickets are unaffected.
    case kdcUnreachable = "kdc-unreachable"
    /// The KDC does not know the user (403).
    case unknownUser = "unknown-user"
    /// The user's account is disabled, locked or expired (403).
    case userDisabled = "user-disabled"
    /// The KDC refused to delegate: the account is sensitive, or the SPN is not in the connector's delegation
    /// list, or protocol transition is not allowed (403).
    case delegationRefused = "delegation-refused"
    /// The app's SPN is not in the directory (502: a configuration fault, not the user's).
    case unknownSPN = "unknown-spn"
    /// The connector's own keytab or TGT is unusable (503).
    case connectorCredential = "connector-credential"
    /// The clocks of the connector and the KDC differ too much (503).
    case clockSkew = "clock-skew"
    /// Anything else (502).
    case other = "kerberos-error"

    /// The HTTP status the user gets.
    public var status: Int {
        switch self {
        case .kdcUnreachable, .connectorCredential, .clockSkew: 503
        case .unknownUser, .userDisabled, .delegationRefused: 403
        case .unknownSPN, .other: 502
        }
    }

    /// Classifies a GSS error at `step` by the Kerberos error code in its minor status.
    public init(_ error: GSSError, at step: DelegationStep) {
        // Through SPNEGO the minor status is a number the GSS mechglue assigned, not the krb5 code; the text
        // (krb5's own error message) still names it.
        var code = Int(Int32(bitPattern: error.minor))
        if !Self.knownCodes.contains(code), let match = Self.code(inMessage: error.message) { code = match }
        switch code {
        case KRB5_KDC_UNREACH, KRB5_REALM_CANT_RESOLVE, KRB5_REALM_UNKNOWN, Int(ECONNREFUSED), Int(ETIMEDOUT), Int(EHOSTUNREACH), Int(ENETUNREACH):
            self = .kdcUnreachable
        case KRB5KRB_AP_ERR_SKEW:
            self = .clockSkew
        case KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN:
            self = step == .s4u2self ? .unknownUser : .connectorCredential
        case KRB5KDC_ERR_POLICY, KRB5KDC_ERR_CLIENT_REVOKED, KRB5KDC_ERR_NAME_EXP:
            self = step == .s4u2self ? .userDisabled : .connectorCredential
        case KRB5KDC_ERR_BADOPTION:
            self = step == .s4u2proxy || step == .s4u2self ? .delegationRefused : .other
        case KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN:
            self = step == .s4u2proxy ? .unknownSPN : .connectorCredential
        case KRB5KDC_ERR_PREAUTH_FAILED, KRB5_PREAUTH_FAILED, KRB5_KT_NOTFOUND, KRB5_KT_END, KRB5KRB_AP_ERR_TKT_EXPIRED, Int(ENOENT), Int(EACCES):
            self = .connectorCredential
        default:
            self = step == .keytab || step == .tgt ? .connectorCredential : .other
        }
    }

    /// Where a KDC keeps the SPNs an account may delegate to.
    static let delegationList =
        "the SPN is not in the connector account's delegation list (AD: msDS-AllowedToDelegateTo, or resource-based delegation on the backend's account; MIT: krbAllowedToDelegateTo on the connector's principal, which needs the LDAP database backend: DB2 cannot delegate)"

    /// krb5's messages for the codes classified here (krb5_err.et), for minor statuses SPNEGO renumbered.
    static let messages: [(text: String, code: Int)] = [
        ("Cannot contact any KDC", KRB5_KDC_UNREACH),
        ("Cannot resolve network address for KDC", KRB5_REALM_CANT_RESOLVE),
        ("Cannot find KDC for realm", KRB5_REALM_UNKNOWN),
        ("Clock skew too great", KRB5KRB_AP_ERR_SKEW),
        ("Client not found in Kerberos database", KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN),
        ("Server not found in Kerberos database", KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN),
        ("KDC policy rejects request", KRB5KDC_ERR_POLICY),
        ("Client's credentials have been revoked", KRB5KDC_ERR_CLIENT_REVOKED),
        ("Client's entry in database has expired", KRB5KDC_ERR_NAME_EXP),
        ("KDC can't fulfill requested option", KRB5KDC_ERR_BADOPTION),
        ("Preauthentication failed", KRB5KDC_ERR_PREAUTH_FAILED),
        ("Ticket expired", KRB5KRB_AP_ERR_TKT_EXPIRED),
        ("Key table entry not found", KRB5_KT_NOTFOUND),
    ]
    static let knownCodes = Set(messages.map(\.code))

    /// The krb5 code a status text names: one of `messages`, or the forms that name the principal ("Server
    /// HTTP/x@R not found in Kerberos database", "Client 'u@R' not found in Kerberos database").
    static func code(inMessage message: String) -> Int? {
        if let match = messages.first(where: { message.contains($0.text) }) { return match.code }
        // The mechanism's words come last, after "; ".
        let last = message.split(separator: ";").last.map { $0.drop { $0 == " " } } ?? Substring(message)
        guard last.contains(" not found in Kerberos database") else { return nil }
        if last.hasPrefix("Server ") { return KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN }
        if last.hasPrefix("Client ") { return KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN }
        return nil
    }

    /// What usually fixes it, for logs and `sallyport check kcd`.
    public func likelyFix(step: DelegationStep) -> String {
        switch self {
        case .kdcUnreachable:
            "check that the connector reaches a KDC on port 88 (TCP and UDP): the realm's kdc lines in krb5.conf (or KRB5_CONFIG) or DNS SRV records (_kerberos._tcp), firewalls"
        case .unknownUser:
            "the directory has no such user: check delegatedLoginIdentity (upn, upnUsername, samAccountName, claim:NAME) and that the user exists on premises; an MIT KDC knows no enterprise names, so use upnUsername or samAccountName there when UPN suffixes differ from the realm"
        case .userDisabled:
            "the user's account is disabled, locked, expired or outside its logon hours (MIT: the principal has -allow_tix or an expiration date in the past)"
        case .delegationRefused:
            "the user may be marked sensitive (AD: \"Account is sensitive and cannot be delegated\" or Protected Users; MIT: -allow_forwardable); otherwise " + Self.delegationList
                + ", or the connector's account may not use protocol transition (AD: \"Use any authentication protocol\"; MIT: +ok_to_auth_as_delegate)"
        case .unknownSPN:
            "no account has this SPN: register it on the backend's account (setspn -S) and write it in the app's sso.spn exactly as registered (the host's A-record name, not a CNAME)"
        case .connectorCredential:
            step == .keytab
                ? "the connector cannot read its keytab: check kerberos.keytab and that the connector's user may read it"
                : "the keytab does not match the account (password changed? run adcli update or export it again), or kerberos.principal names the wrong account, or the account has no SPN"
        case .clockSkew:
            "synchronise the connector's clock with the domain (chrony or systemd-timesyncd against the DCs)"
        case .other:
            "run with KRB5_TRACE=/dev/stderr for the library's own trace"
        }
    }
}

/// A failed delegation step: where, in which category, and the library's own words.
public struct DelegationError: Error, Sendable, CustomStringConvertible {
    public var step: DelegationStep
    public var failure: DelegationFailure
    /// The GSS-API call and its status text (the KDC's error); never a token or key.
    public var detail: String
    /// For a refused S4U2Proxy: whether the user's S4U2Self ticket (the evidence) was forwardable, which tells a
    /// user who may not be delegated from an SPN missing from the delegation list. Nil when not known.
    public var evidenceForwardable: Bool?

    public init(step: DelegationStep, failure: DelegationFailure, detail: String) {
        self.step = step
        self.failure = failure
        self.detail = detail
    }

    init(_ error: GSSError, at step: DelegationStep) {
        self.init(step: step, failure: DelegationFailure(error, at: step), detail: error.description)
    }

    /// Runs one step: a GSS error becomes this step's error in its category, any other error `.other`.
    public static func during<T>(_ step: DelegationStep, _ body: () throws -> T) throws(DelegationError) -> T {
        do {
            return try body()
        } catch let error as GSSError {
            throw DelegationError(error, at: step)
        } catch {
            throw DelegationError(step: step, failure: .other, detail: "\(error)")
        }
    }

    public var description: String { "\(step.rawValue) failed (\(failure.rawValue)): \(detail)" }

    /// What usually fixes it; sharper than the category's advice when the evidence ticket's flags are known.
    public var likelyFix: String {
        guard failure == .delegationRefused, step == .s4u2proxy, let forwardable = evidenceForwardable else { return failure.likelyFix(step: step) }
        return forwardable
            ? "the user's S4U2Self ticket is forwardable, so the user may be delegated: " + DelegationFailure.delegationList
            : Self.notForwardableFix
    }

    /// Why an S4U2Self ticket comes without the forwardable flag, and where each KDC keeps the setting.
    public static let notForwardableFix =
        "the KDC made the user's S4U2Self ticket non-forwardable: the user is marked sensitive (AD: \"Account is sensitive and cannot be delegated\" or Protected Users; MIT: -allow_forwardable), or the connector's account may not use protocol transition (AD: \"Use any authentication protocol\", TRUSTED_TO_AUTH_FOR_DELEGATION; MIT: +ok_to_auth_as_delegate), or the connector's TGT is not forwardable (MIT: -allow_forwardable on the connector's principal)"
}
