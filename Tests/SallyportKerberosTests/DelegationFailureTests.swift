import Testing

@testable import SallyportKerberos

/// Through SPNEGO the minor status is the mechglue's number, not krb5's code: the category comes from the text,
/// including the forms that name the principal inside the sentence.
@Suite struct DelegationFailureTests {
    static func failure(_ text: String, at step: DelegationStep) -> DelegationFailure {
        DelegationFailure(GSSError(operation: "gss_init_sec_context", major: 0, minor: 100_001, message: "Unspecified GSS failure.  Minor code may provide more information; " + text), at: step)
    }

    @Test func principalNamedInTheMessage() {
        #expect(Self.failure("Server HTTP/nope.corp.example.test@CORP.EXAMPLE.TEST not found in Kerberos database", at: .s4u2proxy) == .unknownSPN)
        #expect(Self.failure("Server not found in Kerberos database", at: .s4u2proxy) == .unknownSPN)
        #expect(Self.failure("Client 'nobody@CORP.EXAMPLE.TEST' not found in Kerberos database", at: .s4u2self) == .unknownUser)
        #expect(Self.failure("Client not found in Kerberos database", at: .s4u2self) == .unknownUser)
    }

    @Test func expiredAndRevokedPrincipalsAreDisabledUsers() {
        #expect(Self.failure("Client's entry in database has expired", at: .s4u2self) == .userDisabled)
        #expect(Self.failure("Client's credentials have been revoked", at: .s4u2self) == .userDisabled)
        #expect(Self.failure("Client's entry in database has expired", at: .tgt) == .connectorCredential)
    }

    @Test func evidenceFlagSharpensTheDelegationHint() {
        var error = DelegationError(step: .s4u2proxy, failure: .delegationRefused, detail: "KDC can't fulfill requested option")
        #expect(error.likelyFix.contains("AD:") && error.likelyFix.contains("MIT:"))
        error.evidenceForwardable = false
        #expect(error.likelyFix.hasPrefix("the KDC made the user's S4U2Self ticket non-forwardable"))
        #expect(error.likelyFix.contains("-allow_forwardable") && error.likelyFix.contains("+ok_to_auth_as_delegate"))
        error.evidenceForwardable = true
        #expect(error.likelyFix.contains("krbAllowedToDelegateTo") && error.likelyFix.contains("msDS-AllowedToDelegateTo"))
        #expect(!error.likelyFix.contains("sensitive"))
    }
}
