// What Swift cannot reach in GSS-API directly: status macros, the OIDs the library exports as macros or
// pointers to static data, and the one krb5 walk GSS-API has no call for (a credential's ticket flags).
// Nothing else lives in C.
#ifndef CSALLYPORT_GSS_H
#define CSALLYPORT_GSS_H

#include <gssapi/gssapi.h>
#include <gssapi/gssapi_ext.h>
#include <gssapi/gssapi_krb5.h>
// For the krb5 error codes (KRB5KDC_ERR_*) that GSS-API returns as minor statuses, and the ticket walk below.
#include <krb5/krb5.h>

/// GSS_ERROR(major): non-zero when `major` reports a failure.
int csallyport_gss_is_error(OM_uint32 major);
/// GSS_S_CONTINUE_NEEDED is set in `major`.
int csallyport_gss_continue_needed(OM_uint32 major);
/// The routine error part of `major` (GSS_ROUTINE_ERROR).
OM_uint32 csallyport_gss_routine_error(OM_uint32 major);

/// The Kerberos 5 mechanism (1.2.840.113554.1.2.2).
gss_OID csallyport_gss_mech_krb5(void);
/// SPNEGO (1.3.6.1.5.5.2).
gss_OID csallyport_gss_mech_spnego(void);
/// A Kerberos principal name, imported as is (no host-based canonicalisation).
gss_OID csallyport_gss_nt_krb5_principal(void);
/// A Kerberos enterprise principal name (`user@upn.suffix`), resolved by the KDC (AD: alternative UPN suffixes).
gss_OID csallyport_gss_nt_enterprise(void);
/// GSS_C_NO_CREDENTIAL, GSS_C_NO_CONTEXT, GSS_C_NO_NAME, GSS_C_NO_OID_SET as values.
gss_cred_id_t csallyport_gss_no_credential(void);
gss_ctx_id_t csallyport_gss_no_context(void);
gss_name_t csallyport_gss_no_name(void);
gss_OID_set csallyport_gss_no_oid_set(void);
/// GSS_S_FAILURE.
OM_uint32 csallyport_gss_failure(void);
/// GSS_C_INDEFINITE.
OM_uint32 csallyport_gss_indefinite(void);

/// One ticket of a credential: its server principal (NUL-terminated, cut at 255 bytes) and krb5 ticket flags.
typedef struct {
    char server[256];
    krb5_flags flags;
} csallyport_ticket;

/// The tickets `cred` holds (copied into a private memory ccache, destroyed before returning): up to `capacity`
/// into `out`. Returns how many, or -1 with the krb5 or GSS minor status in `*code`. Keys stay inside krb5.
int csallyport_gss_cred_tickets(gss_cred_id_t cred, csallyport_ticket *out, int capacity, int32_t *code);
/// TKT_FLG_FORWARDABLE.
krb5_flags csallyport_ticket_flag_forwardable(void);

#endif
