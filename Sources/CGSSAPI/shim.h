// MIT Kerberos GSS-API (Debian: libkrb5-dev, headers under /usr/include/mit-krb5 via pkg-config krb5-gssapi).
#include <gssapi/gssapi.h>
#include <gssapi/gssapi_ext.h>
#include <gssapi/gssapi_krb5.h>
