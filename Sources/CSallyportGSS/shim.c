#include "CSallyportGSS.h"

#include <string.h>

int csallyport_gss_is_error(OM_uint32 major) { return GSS_ERROR(major) ? 1 : 0; }
int csallyport_gss_continue_needed(OM_uint32 major) { return (major & GSS_S_CONTINUE_NEEDED) ? 1 : 0; }
OM_uint32 csallyport_gss_routine_error(OM_uint32 major) { return GSS_ROUTINE_ERROR(major); }

static gss_OID_desc spnego_oid = { 6, (void *)"\x2b\x06\x01\x05\x05\x02" };

gss_OID csallyport_gss_mech_krb5(void) { return (gss_OID)gss_mech_krb5; }
gss_OID csallyport_gss_mech_spnego(void) { return &spnego_oid; }
gss_OID csallyport_gss_nt_krb5_principal(void) { return (gss_OID)GSS_KRB5_NT_PRINCIPAL_NAME; }
gss_OID csallyport_gss_nt_enterprise(void) { return (gss_OID)GSS_KRB5_NT_ENTERPRISE_NAME; }
gss_cred_id_t csallyport_gss_no_credential(void) { return GSS_C_NO_CREDENTIAL; }
gss_ctx_id_t csallyport_gss_no_context(void) { return GSS_C_NO_CONTEXT; }
gss_name_t csallyport_gss_no_name(void) { return GSS_C_NO_NAME; }
gss_OID_set csallyport_gss_no_oid_set(void) { return GSS_C_NO_OID_SET; }
OM_uint32 csallyport_gss_failure(void) { return GSS_S_FAILURE; }
OM_uint32 csallyport_gss_indefinite(void) { return GSS_C_INDEFINITE; }

krb5_flags csallyport_ticket_flag_forwardable(void) { return TKT_FLG_FORWARDABLE; }

int csallyport_gss_cred_tickets(gss_cred_id_t cred, csallyport_ticket *out, int capacity, int32_t *code) {
    krb5_context context = NULL;
    krb5_ccache cache = NULL;
    krb5_cc_cursor cursor = NULL;
    krb5_creds creds;
    OM_uint32 minor = 0;
    int count = -1;
    krb5_error_code ret = krb5_init_context(&context);
    if (ret) goto done;
    if ((ret = krb5_cc_new_unique(context, "MEMORY", NULL, &cache))) goto done;
    if (GSS_ERROR(gss_krb5_copy_ccache(&minor, cred, cache))) { ret = (krb5_error_code)minor; goto done; }
    if ((ret = krb5_cc_start_seq_get(context, cache, &cursor))) goto done;
    count = 0;
    while (count < capacity && krb5_cc_next_cred(context, cache, &cursor, &creds) == 0) {
        if (!krb5_is_config_principal(context, creds.server)) {
            char *name = NULL;
            out[count].server[0] = 0;
            if (krb5_unparse_name(context, creds.server, &name) == 0) {
                strncpy(out[count].server, name, sizeof(out[count].server) - 1);
                out[count].server[sizeof(out[count].server) - 1] = 0;
                krb5_free_unparsed_name(context, name);
            }
            out[count].flags = creds.ticket_flags;
            count++;
        }
        krb5_free_cred_contents(context, &creds);
    }
    krb5_cc_end_seq_get(context, cache, &cursor);
done:
    if (count < 0 && code) *code = ret;
    if (cache) krb5_cc_destroy(context, cache);
    if (context) krb5_free_context(context);
    return count;
}
