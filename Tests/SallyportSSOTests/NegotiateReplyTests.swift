import Foundation
@testable import SallyportKCD
import Testing

@Suite("Negotiate replies")
struct NegotiateReplyTests {
    static func bytes(_ base64: String) -> [UInt8] { Array(Data(base64Encoded: base64)!) }

    /// What Go's gokrb5 v8 sends after authenticating the user: accept-completed, supportedMech krb5, no
    /// responseToken. Before, the connector tried to verify it, GSS-API said "Invalid token", and users got 502.
    @Test func gokrb5sAcceptCompletedWithoutAReplyIsNoReply() {
        #expect(NegotiateReply.classify(Self.bytes("oRQwEqADCgEAoQsGCSqGSIb3EgECAg==")) == .acceptedWithoutToken)
    }

    @Test func aResponseTokenIsVerified() {
        // [1] { [0] ENUMERATED 0, [2] OCTET STRING 04 02 01 02 }
        let withToken: [UInt8] = [0xA1, 0x0F, 0x30, 0x0D, 0xA0, 0x03, 0x0A, 0x01, 0x00, 0xA2, 0x06, 0x04, 0x04, 0x6F, 0x02, 0x01, 0x02]
        #expect(NegotiateReply.classify(withToken) == .token)
    }

    @Test func rejectIsSeen() {
        let reject: [UInt8] = [0xA1, 0x07, 0x30, 0x05, 0xA0, 0x03, 0x0A, 0x01, 0x02]
        #expect(NegotiateReply.classify(reject) == .rejected)
    }

    @Test func aRawKerberosReplyOrGarbageIsLeftToGSSAPI() {
        // An AP-REP is [APPLICATION 15]; anything that is not a NegTokenResp goes to GSS-API, which judges it.
        #expect(NegotiateReply.classify([0x6F, 0x03, 0x30, 0x01, 0x00]) == .token)
        #expect(NegotiateReply.classify([0x01, 0x02, 0x03]) == .token)
        #expect(NegotiateReply.classify([0xA1, 0xFF]) == .token)
    }
}
