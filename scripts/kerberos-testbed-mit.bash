# The MIT side of scripts/kerberos-testbed.sh (sourced by it, not run): an MIT krb5kdc whose database is
# OpenLDAP (the LDAP backend, the only one with constrained delegation), with the same realm, accounts,
# keytabs and KEY=VALUE lines as the Samba AD side, so the same tests run against both KDCs.
#
#   Samba AD                                    MIT (kadmin / LDAP attribute)
#   delegation for-any-protocol                 +ok_to_auth_as_delegate
#   delegation add-service (msDS-Allowed…)      krbAllowedToDelegateTo on the connector's LDAP entry
#   user sensitive                              -allow_forwardable
#   user disable                                -allow_tix
#   account expiry                              -expire
#
# slapd listens only on a Unix socket in DIR (ldapi), krb5kdc only on loopback. Test-only passwords.

MIT_LDAP_BASE=dc=corp,dc=example,dc=test
MIT_LDAP_ADMIN=cn=admin,$MIT_LDAP_BASE
MIT_LDAP_PASSWORD='Testbed-Ldap-1'
MIT_MASTER_PASSWORD='Testbed-Master-1'
MIT_CONTAINER=cn=krbContainer,$MIT_LDAP_BASE
# frank's account expired yesterday: the KDC answers KDC_ERR_NAME_EXP (AD says CLIENT_REVOKED).
MIT_EXPIRED_USER=frank

mit_ldap_uri() { printf 'ldapi://%s' "$(printf '%s' "$DIR/run/ldapi" | sed 's|/|%2F|g')"; }

mit_env() { # the environment MIT's tools read: the test bed's krb5.conf and kdc.conf
    export KRB5_CONFIG="$DIR/krb5.conf" KRB5_KDC_PROFILE="$DIR/mit/kdc.conf"
}

mit_kadmin() { # QUERY: kadmin.local on the LDAP database (no kadmind, no network)
    local out
    out=$(kadmin.local -q "$1" 2>&1) || die "kadmin.local '$1' failed: $out"
    if grep -q -E '^(add_principal|modify_principal|ktadd|get_principal):|while ' <<<"$out"; then
        die "kadmin.local '$1' failed: $out"
    fi
}

mit_slapd_pid() {
    local pid
    pid=$(read_pid "$DIR/run/slapd.pid")
    if pid_alive "$pid"; then echo "$pid"; fi
}

mit_kdc_pid() {
    local pid
    pid=$(read_pid "$DIR/run/krb5kdc.pid")
    if pid_alive "$pid"; then echo "$pid"; fi
}

mit_write_slapd_config() {
    local m="$DIR/mit"
    zcat /usr/share/doc/krb5-kdc-ldap/kerberos.openldap.ldif.gz >"$m/kerberos.ldif"
    cat >"$m/slapd-config.ldif" <<EOF
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: $DIR/run/slapd.pid
olcLogLevel: none

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif
include: file://$m/kerberos.ldif

dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: {0}to * by * none

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcDbDirectory: $m/ldap-data
olcSuffix: $MIT_LDAP_BASE
olcRootDN: $MIT_LDAP_ADMIN
olcRootPW: $MIT_LDAP_PASSWORD
olcDbMaxSize: 104857600
olcDbIndex: objectClass eq
olcDbIndex: krbPrincipalName eq,pres,sub
olcAccess: {0}to * by * none
EOF
    printf 'dn: %s\nobjectClass: dcObject\nobjectClass: organization\no: corp\ndc: corp\n' "$MIT_LDAP_BASE" >"$m/base.ldif"
}

mit_write_kdc_conf() {
    cat >"$DIR/mit/kdc.conf.tmp" <<EOF
# Written by scripts/kerberos-testbed.sh: krb5kdc with the LDAP database backend (KRB5_KDC_PROFILE).
[kdcdefaults]
    kdc_listen = 127.0.0.1:$KDC_PORT
    kdc_tcp_listen = 127.0.0.1:$KDC_PORT
    spake_preauth_kdc_challenge = edwards25519

[realms]
    $REALM = {
        database_module = ldap
        key_stash_file = $DIR/mit/master.stash
        max_life = ${KRB_TESTBED_USER_TICKET_HOURS:-10}h
        max_renewable_life = ${KRB_TESTBED_RENEWAL_HOURS:-168}h
        acl_file = $DIR/mit/kadm5.acl
    }

[dbmodules]
    ldap = {
        db_library = kldap
        ldap_kerberos_container_dn = $MIT_CONTAINER
        ldap_kdc_dn = $MIT_LDAP_ADMIN
        ldap_kadmind_dn = $MIT_LDAP_ADMIN
        ldap_service_password_file = $DIR/mit/ldap.stash
        ldap_servers = $(mit_ldap_uri)
        ldap_conns_per_server = 2
    }

[logging]
    kdc = FILE:$DIR/log/krb5kdc.log
    default = FILE:$DIR/log/krb5lib.log
EOF
    mv "$DIR/mit/kdc.conf.tmp" "$DIR/mit/kdc.conf"
}

mit_start_slapd() {
    [ -n "$(mit_slapd_pid)" ] && return 0
    rm -f "$DIR/run/slapd.pid" "$DIR/run/ldapi"
    /usr/sbin/slapd -F "$DIR/mit/slapd.d" -h "$(mit_ldap_uri)" </dev/null >>"$DIR/log/slapd.log" 2>&1 ||
        die "slapd failed to start; see $DIR/log/slapd.log"
    local i
    for ((i = 0; i < 100; i++)); do
        ldapsearch -x -H "$(mit_ldap_uri)" -D "$MIT_LDAP_ADMIN" -w "$MIT_LDAP_PASSWORD" -b "$MIT_LDAP_BASE" -s base >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "slapd does not answer on $DIR/run/ldapi; see $DIR/log/slapd.log"
}

mit_ldap_modify() { ldapmodify -x -H "$(mit_ldap_uri)" -D "$MIT_LDAP_ADMIN" -w "$MIT_LDAP_PASSWORD" >/dev/null; }

mit_provision() {
    log "provisioning $REALM (MIT krb5kdc, OpenLDAP backend) in $DIR"
    local started=$SECONDS m="$DIR/mit"
    if [ -z "$DIR" ] || [ "$DIR" = / ]; then die "refusing to provision into '$DIR'"; fi
    rm -rf "${DIR:?}/mit" "$DIR/run" "$DIR/log"
    mkdir -p "$m/slapd.d" "$m/ldap-data" "$DIR/run" "$DIR/log"
    chmod 0700 "$m"
    mit_write_slapd_config
    slapadd -n0 -F "$m/slapd.d" -l "$m/slapd-config.ldif" >"$DIR/log/provision.log" 2>&1 || die "slapadd (config) failed; see $DIR/log/provision.log"
    slapadd -n1 -F "$m/slapd.d" -l "$m/base.ldif" >>"$DIR/log/provision.log" 2>&1 || die "slapadd (base) failed; see $DIR/log/provision.log"
    : >"$m/kadm5.acl"
    write_krb5_conf
    mit_write_kdc_conf
    mit_env
    mit_start_slapd
    kdb5_ldap_util -D "$MIT_LDAP_ADMIN" -w "$MIT_LDAP_PASSWORD" -H "$(mit_ldap_uri)" \
        create -subtrees "$MIT_LDAP_BASE" -r "$REALM" -s -P "$MIT_MASTER_PASSWORD" >>"$DIR/log/provision.log" 2>&1 ||
        die "kdb5_ldap_util create failed; see $DIR/log/provision.log"
    printf '%s\n%s\n' "$MIT_LDAP_PASSWORD" "$MIT_LDAP_PASSWORD" |
        kdb5_ldap_util -D "$MIT_LDAP_ADMIN" -w "$MIT_LDAP_PASSWORD" -H "$(mit_ldap_uri)" \
            stashsrvpw -f "$m/ldap.stash" "$MIT_LDAP_ADMIN" >>"$DIR/log/provision.log" 2>&1 ||
        die "kdb5_ldap_util stashsrvpw failed; see $DIR/log/provision.log"

    mit_kadmin "addprinc -pw $ALICE_PASSWORD alice"
    mit_kadmin "addprinc -pw $BOB_PASSWORD bob"
    # MIT's "sensitive": tickets for carol are never forwardable, so no S4U2Self ticket of hers is evidence.
    mit_kadmin "addprinc -pw $CAROL_PASSWORD -allow_forwardable carol"
    mit_kadmin "addprinc -pw $EXTRA_PASSWORD dave"
    # An MIT KDC resolves no enterprise names: erin is a plain principal here.
    mit_kadmin "addprinc -pw $EXTRA_PASSWORD erin"
    mit_kadmin "addprinc -pw $EXTRA_PASSWORD -expire yesterday $MIT_EXPIRED_USER"
    # The connector: protocol transition allowed (forwardable S4U2Self tickets); delegation list below.
    mit_kadmin "addprinc -randkey +ok_to_auth_as_delegate $CONNECTOR_ACCOUNT"
    mit_kadmin "addprinc -randkey $APP_SPN"
    mit_kadmin "addprinc -randkey $OTHER_SPN"
    printf 'dn: krbPrincipalName=%s@%s,cn=%s,%s\nchangetype: modify\nadd: krbAllowedToDelegateTo\nkrbAllowedToDelegateTo: %s@%s\n' \
        "$CONNECTOR_ACCOUNT" "$REALM" "$REALM" "$MIT_CONTAINER" "$APP_SPN" "$REALM" | mit_ldap_modify ||
        die "could not set krbAllowedToDelegateTo on $CONNECTOR_ACCOUNT"
    rm -f "$DIR/connector.keytab" "$DIR/app.keytab" "$DIR/other.keytab"
    mit_kadmin "ktadd -k $DIR/connector.keytab $CONNECTOR_ACCOUNT"
    mit_kadmin "ktadd -k $DIR/app.keytab $APP_SPN"
    mit_kadmin "ktadd -k $DIR/other.keytab $OTHER_SPN"
    chmod 0600 "$DIR/connector.keytab" "$DIR/app.keytab" "$DIR/other.keytab"
    echo "$((SECONDS - started))" >"$DIR/.provisioned"
    log "MIT realm ready in $((SECONDS - started)) s"
}

mit_cmd_start() {
    command -v krb5kdc >/dev/null 2>&1 || [ -x /usr/sbin/krb5kdc ] || die "krb5kdc is not installed: run $0 install"
    local pid
    pid=$(mit_kdc_pid)
    if [ -n "$pid" ]; then
        log "krb5kdc already running (pid $pid); settings of this start are not applied (stop it first)"
        unset KRB_TESTBED_KDC_PORT
        load_ports
    else
        if tcp_open 127.0.0.1 "$KDC_PORT"; then
            die "127.0.0.1:$KDC_PORT is already in use (another test bed still running? stop it, or set KRB_TESTBED_KDC_PORT)"
        fi
        echo "$KDC_PORT $KPASSWD_PORT" >"$DIR/ports"
        [ -f "$DIR/.provisioned" ] || mit_provision
        write_krb5_conf
        mit_write_kdc_conf
        mit_env
        mit_start_slapd
        local started=$SECONDS
        rm -f "$DIR/run/krb5kdc.pid"
        /usr/sbin/krb5kdc -P "$DIR/run/krb5kdc.pid" </dev/null >>"$DIR/log/krb5kdc.stdout" 2>&1 ||
            die "krb5kdc failed to start; see $DIR/log/krb5kdc.log"
        wait_for_kdc "$started"
    fi
    write_krb5_conf_if_missing
    cmd_summary "$DIR"
}

mit_cmd_stop() {
    local pid name
    for name in krb5kdc slapd; do
        pid=$(read_pid "$DIR/run/$name.pid")
        if pid_alive "$pid"; then
            stop_pid "$pid" 100
            log "$name stopped (pid $pid)"
        fi
        rm -f "$DIR/run/$name.pid"
    done
}

mit_user() { # enable|disable NAME
    mit_env
    mit_start_slapd
    mit_kadmin "modprinc $([ "$1" = enable ] && echo +allow_tix || echo -allow_tix) $2"
    log "user $2: $1d (allow_tix)"
}

# The KDC's log, one line per request: "AS_REQ … <client> for <server>" or "TGS_REQ … <client> for <server>"
# with ISSUE or the error code, then for S4U "... PROTOCOL-TRANSITION s4u-client=<user>" or
# "... CONSTRAINED-DELEGATION s4u-client=<user>". Refusals are logged without the user
# (UNKNOWN_S4U2SELF_PRINCIPAL, EVIDENCE_TKT_NOT_FORWARDABLE, UNSUPPORTED_S4U2PROXY_REQUEST, …), so
# S4U2SELF_UNKNOWN_USER, S4U2PROXY and S4U2PROXY_REFUSED count refusals only for everyone (kvno -U asks
# for the user's TGT first: its CLIENT_NOT_FOUND counts for the user).
mit_count() { # USER-REGEX (escaped, with realm) or .*
    local u=$1 log="$DIR/log/krb5kdc.log"
    [ -f "$log" ] || die "no KDC log at $log"
    COUNT_USER="^($u)\$" awk '
        BEGIN { u = ENVIRON["COUNT_USER"]; everyone = (u == "^(.*)$") }
        / AS_REQ / { split($0, a, " for "); n = split(a[1], w, " "); if (w[n] ~ u) as++ }
        / TGS_REQ / { split($0, a, ": "); issued = (index($0, ": ISSUE: ") > 0); n = split($0, w, " ");
                      for (i = 1; i < n; i++) if (w[i + 1] == "for" && i + 2 <= n) { c = w[i]; s = w[i + 2]; sub(/,$/, "", s) }
                      if (c == s) selfreq++ }
        /CLIENT_NOT_FOUND: / { split($0, a, "CLIENT_NOT_FOUND: "); split(a[2], w, " "); if (w[1] ~ u) unknown++ }
        / TGS_REQ .*UNKNOWN_S4U2SELF_PRINCIPAL: / { if (everyone) unknown++ }
        /\.\.\. PROTOCOL-TRANSITION s4u-client=/ { split($0, a, "s4u-client="); if (a[2] ~ u && issued) self++ }
        /\.\.\. CONSTRAINED-DELEGATION s4u-client=/ { split($0, a, "s4u-client="); if (a[2] ~ u) { proxy++; if (issued) proxyok++; else refused++ } }
        / TGS_REQ .*(EVIDENCE_TKT_NOT_FORWARDABLE|NOT_ALLOWED_TO_DELEGATE|UNSUPPORTED_S4U2PROXY_REQUEST|BAD_OPTION): / { allrefused++ }
        END { printf "AS_REQ=%d\nS4U2SELF=%d\nS4U2SELF_REQUESTS=%d\nS4U2SELF_UNKNOWN_USER=%d\nS4U2PROXY=%d\nS4U2PROXY_OK=%d\nS4U2PROXY_REFUSED=%d\n",
              as, self, selfreq, unknown, everyone ? proxyok + allrefused : proxy, proxyok, everyone ? allrefused : refused }
    ' "$log"
}

mit_reap_orphans() { # krb5kdc and slapd of test beds whose directory is gone
    local pid conf
    for pid in $(pgrep -x krb5kdc 2>/dev/null || true); do
        conf=$(cmdline_argument "$pid" -P)
        case "$conf" in
        */run/krb5kdc.pid) [ -d "$(dirname "$conf")" ] || { log "stopping krb5kdc $pid of a removed test bed ($conf)"; kill -KILL "$pid" 2>/dev/null || true; } ;;
        esac
    done
    for pid in $(pgrep -x slapd 2>/dev/null || true); do
        conf=$(cmdline_argument "$pid" -F)
        case "$conf" in
        */mit/slapd.d) [ -d "$conf" ] || { log "stopping slapd $pid of a removed test bed ($conf)"; kill -KILL "$pid" 2>/dev/null || true; } ;;
        esac
    done
}
