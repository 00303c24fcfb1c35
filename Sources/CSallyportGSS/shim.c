#include "CSallyportGSS.h"

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
OM_uint32 csallyport_gss_indefinite(void) { return GSS_C_INDEFINITE; }
