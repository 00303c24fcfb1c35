#!/usr/bin/env bash
# Kerberos test bed for Kerberos Constrained Delegation: a Samba AD domain controller (realm
# CORP.EXAMPLE.TEST) serving only its KDC on loopback, or an MIT krb5kdc with the OpenLDAP backend for the
# same realm and accounts (KRB_TESTBED_KDC=mit; scripts/kerberos-testbed-mit.bash), and Apache httpd with
# mod_auth_gssapi as a backend that requires Negotiate and echoes the authenticated user. Everything lives
# in one directory DIR; the KDC kind is chosen when DIR is first provisioned.
#
#   kerberos-testbed.sh install            Debian packages (non-interactive; starts no system service)
#   kerberos-testbed.sh start DIR          provision the domain once, start the KDC, print KEY=VALUE lines
#   kerberos-testbed.sh stop DIR           stop the KDC (DIR is kept; `start DIR` resumes in about a second)
#   kerberos-testbed.sh summary DIR        print the KEY=VALUE lines again
#   kerberos-testbed.sh apache DIR PORT    start Apache on 127.0.0.1:PORT (needs `start DIR` first)
#   kerberos-testbed.sh apache-stop DIR    stop Apache
#   kerberos-testbed.sh count DIR [USER]   count S4U exchanges in the KDC's log (KEY=VALUE lines)
#   kerberos-testbed.sh user DIR enable|disable NAME   enable or disable an account, as an administrator would
#   kerberos-testbed.sh verify DIR PORT    check the whole chain with MIT tools and curl (no Sallyport)
#
# Settings of `start` (environment; the ticket and port settings apply at every start, not only the first):
#   KRB_TESTBED_KDC                   samba (default) or mit, read when DIR is first provisioned
#   KRB_TESTBED_USER_TICKET_HOURS     KDC's TGT lifetime in whole hours (default 10; smb.conf
#                                     kdc:user ticket lifetime; fractions are read as 0, which breaks TGS)
#   KRB_TESTBED_SERVICE_TICKET_HOURS  KDC's service ticket lifetime in whole hours (default 10)
#   KRB_TESTBED_RENEWAL_HOURS         KDC's renewal lifetime in whole hours (default 168)
#   KRB_TESTBED_CLIENT_TICKET_LIFETIME  ticket_lifetime written to DIR/krb5.conf (e.g. 3m; default unset:
#                                     MIT's 1 day, capped by the KDC). Shorter-than-an-hour tickets come
#                                     from here: S4U tickets end when the connector's TGT ends. Samba's KDC
#                                     refuses every TGS-REQ whose TGT has 120 s or less left, so keep it
#                                     at 3m or more and renew before 2 minutes remain.
#   KRB_TESTBED_CLIENT_RENEW_LIFETIME renew_lifetime written to DIR/krb5.conf (e.g. 10m; default unset)
#   KRB_TESTBED_KDC_PORT              KDC port on 127.0.0.1 and ::1 (default 88)
#   KRB_TESTBED_KPASSWD_PORT          kpasswd port (default 464)
#   KRB_TESTBED_SERVICES              samba `server services` (default kdc; the accounts are made offline)
#   KRB_TESTBED_LOG_LEVEL             samba log level (default "1 kerberos:3": one line per KDC step)
#   KRB_TESTBED_PROCESS_MODEL         samba process model (default single: one process)
set -euo pipefail

REALM=CORP.EXAMPLE.TEST
DOMAIN=CORP
DNS_DOMAIN=corp.example.test
BASE_DN=DC=corp,DC=example,DC=test
HOST_NAME=dc1

ADMIN_PASSWORD='Testbed-Admin-1'
ALICE_PASSWORD='Alice-Pass-1'
BOB_PASSWORD='Bob-Pass-1'
CAROL_PASSWORD='Carol-Pass-1'
EXTRA_PASSWORD='Extra-Pass-1'
ERIN_UPN=erin@partner.example.test
CONNECTOR_ACCOUNT=sallyport-conn
CONNECTOR_PASSWORD='Connector-Pass-1'
# Samba's KDC serves S4U2Self only to an account that has a servicePrincipalName.
CONNECTOR_SPN=host/sallyport-conn.corp.example.test
APP_ACCOUNT=svc-app
APP_PASSWORD='App-Pass-1'
APP_SPN=HTTP/app.corp.example.test
OTHER_ACCOUNT=svc-other
OTHER_PASSWORD='Other-Pass-1'
OTHER_SPN=HTTP/other.corp.example.test

KDC_PORT=${KRB_TESTBED_KDC_PORT:-88}
KPASSWD_PORT=${KRB_TESTBED_KPASSWD_PORT:-464}

# shellcheck source=kerberos-testbed-mit.bash
. "$(dirname "${BASH_SOURCE[0]}")/kerberos-testbed-mit.bash"

log() { echo "kerberos-testbed: $*" >&2; }

# samba or mit: what DIR was provisioned with, else what KRB_TESTBED_KDC asks for.
kdc_kind() {
    local kind
    if [ -s "$DIR/kdc" ]; then kind=$(cat "$DIR/kdc"); else kind=${KRB_TESTBED_KDC:-samba}; fi
    case "$kind" in samba | mit) echo "$kind" ;; *) die "KRB_TESTBED_KDC must be samba or mit, not '$kind'" ;; esac
}

kdc_pid() { if [ "$(kdc_kind)" = mit ]; then mit_kdc_pid; else samba_running_pid; fi; }

kdc_log() { if [ "$(kdc_kind)" = mit ]; then echo "$DIR/log/krb5kdc.log"; else echo "$DIR/log/samba.log"; fi; }
die() { log "$*"; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

abs_dir() {
    [ -n "${1:-}" ] || usage
    mkdir -p "$1"
    (cd "$1" && pwd)
}

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

read_pid() { if [ -s "$1" ]; then tr -dc '0-9' <"$1"; fi; }

# Waits until PID has exited (up to $2 tenths of a second), then kills it hard.
stop_pid() {
    local pid=$1 tenths=${2:-100} i
    pid_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < tenths; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    log "process $pid did not stop in time; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# ---------------------------------------------------------------------------------------------------
# install

cmd_install() {
    export DEBIAN_FRONTEND=noninteractive
    # samba-ad-dc: the AD DC parts (needs samba, samba-dsdb-modules, winbind); samba-ad-provision: the
    # templates that `samba-tool domain provision` reads (only a Recommends of samba-ad-dc).
    # krb5-user: kinit, kvno, klist. ldb-tools: ldbmodify. python3-gssapi: raw krb5 tokens in `verify`.
    # golang-go, golang-github-jcmturner-gokrb5.v8-dev: the Go backend the tests build (gokrb5's SPNEGO).
    # lighttpd, lighttpd-mod-authn-gssapi: a backend that sends no mutual-authentication reply.
    # slapd, ldap-utils, krb5-kdc, krb5-kdc-ldap, krb5-admin-server: the MIT KDC on OpenLDAP (kadmin.local).
    local packages=(samba samba-ad-dc samba-ad-provision samba-dsdb-modules winbind
        slapd ldap-utils krb5-kdc krb5-kdc-ldap krb5-admin-server
        krb5-user libkrb5-dev libgssapi-krb5-2 pkg-config ldb-tools
        apache2 libapache2-mod-auth-gssapi curl python3-gssapi
        golang-go golang-github-jcmturner-gokrb5.v8-dev lighttpd lighttpd-mod-authn-gssapi)
    local missing=() package
    for package in "${packages[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$package")
        fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        [ "$(id -u)" -eq 0 ] || die "install needs root (apt-get install ${missing[*]})"
        log "installing Debian packages: ${missing[*]}"
        apt-get update -q
        # Keep the packages' maintainer scripts from starting samba, smbd, nmbd, winbind or apache2.
        local added_policy=0 status=0
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod 0755 /usr/sbin/policy-rc.d
            added_policy=1
        fi
        apt-get install -y -q --no-install-recommends "${missing[@]}" || status=$?
        if [ "$added_policy" -eq 1 ]; then
            rm -f /usr/sbin/policy-rc.d
        fi
        [ "$status" -eq 0 ] || die "apt-get install failed with status $status"
    else
        log "Debian packages already installed: ${packages[*]}"
    fi
    # The test bed runs its own samba and apache2; system copies must neither run nor start at boot.
    local service
    for service in samba-ad-dc smbd nmbd winbind samba apache2 lighttpd slapd krb5-kdc krb5-admin-server; do
        if [ -e "/etc/init.d/$service" ] || [ -e "/lib/systemd/system/$service.service" ]; then
            if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
                systemctl disable --now "$service" >/dev/null 2>&1 || true
            else
                update-rc.d "$service" disable >/dev/null 2>&1 || true
                if [ -x "/etc/init.d/$service" ] && "/etc/init.d/$service" status >/dev/null 2>&1; then
                    "/etc/init.d/$service" stop >/dev/null 2>&1 || true
                fi
            fi
        fi
    done
    local tool
    for tool in samba samba-tool ldbmodify kinit kvno klist apache2 curl go lighttpd slapd slapadd ldapmodify krb5kdc kadmin.local kdb5_ldap_util; do
        command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || die "$tool is missing after installation"
    done
    [ -e /usr/lib/apache2/modules/mod_auth_gssapi.so ] || die "mod_auth_gssapi.so is missing"
    [ -d /usr/share/gocode/src/github.com/jcmturner/gokrb5/v8 ] || die "gokrb5 v8's sources are missing"
    [ -e /usr/lib/lighttpd/mod_authn_gssapi.so ] || die "lighttpd's mod_authn_gssapi.so is missing"
    [ -e /usr/lib/x86_64-linux-gnu/krb5/plugins/kdb/kldap.so ] || [ -n "$(find /usr/lib -name kldap.so -path '*krb5/plugins/kdb*' 2>/dev/null)" ] ||
        die "MIT's LDAP database module (kldap.so, krb5-kdc-ldap) is missing"
    log "ready: samba $(samba -V 2>/dev/null | sed 's/^Version //'), krb5 $(dpkg-query -W -f='${Version}' krb5-user)," \
        "apache2 $(dpkg-query -W -f='${Version}' apache2), mod_auth_gssapi $(dpkg-query -W -f='${Version}' libapache2-mod-auth-gssapi)"
}

# ---------------------------------------------------------------------------------------------------
# start / stop

samba_tool() { samba-tool "$@" -s "$DIR/etc/smb.conf"; }

ldb_modify() { ldbmodify -H "$DIR/private/sam.ldb" >/dev/null; }

set_supported_enctypes() { # ACCOUNT VALUE  (msDS-SupportedEncryptionTypes: 0x18 AES, 0x1c AES+RC4)
    printf 'dn: CN=%s,CN=Users,%s\nchangetype: modify\nreplace: msDS-SupportedEncryptionTypes\nmsDS-SupportedEncryptionTypes: %s\n' \
        "$1" "$BASE_DN" "$2" | ldb_modify
}

export_keytab() { # FILE PRINCIPAL
    rm -f "$1"
    local out
    out=$(samba_tool domain exportkeytab "$1" --principal="$2" 2>&1) || die "exportkeytab $2 failed: $out"
    chmod 0600 "$1"
}

provision() {
    log "provisioning $REALM in $DIR"
    local started=$SECONDS
    if [ -z "$DIR" ] || [ "$DIR" = / ]; then die "refusing to provision into '$DIR'"; fi
    rm -rf "${DIR:?}/etc" "$DIR/private" "$DIR/state" "$DIR/cache" "$DIR/bind-dns" "$DIR/gencache.tdb" \
        "$DIR/run" "$DIR/log"
    mkdir -p "$DIR/run" "$DIR/log"
    samba-tool domain provision --targetdir="$DIR" --realm="$REALM" --domain="$DOMAIN" \
        --server-role=dc --dns-backend=NONE --host-name="$HOST_NAME" --adminpass="$ADMIN_PASSWORD" \
        --option="interfaces=lo" --option="bind interfaces only=yes" \
        --option="pid directory=$DIR/run" --option="log file=$DIR/log/samba.log" \
        --option="max log size=0" >"$DIR/log/provision.log" 2>&1 ||
        die "provision failed; see $DIR/log/provision.log"
    log "provisioned in $((SECONDS - started)) s; creating accounts"

    # The KDC is not running yet: samba-tool and ldbmodify write sam.ldb directly.
    samba_tool domain passwordsettings set --max-pwd-age=0 >/dev/null
    samba_tool user create alice "$ALICE_PASSWORD" >/dev/null
    samba_tool user create bob "$BOB_PASSWORD" >/dev/null
    samba_tool user create carol "$CAROL_PASSWORD" >/dev/null
    # Users nothing else touches: tests use them when they need a user whose tickets are not cached yet.
    samba_tool user create dave "$EXTRA_PASSWORD" >/dev/null
    samba_tool user create erin "$EXTRA_PASSWORD" >/dev/null
    # erin signs in with a UPN whose suffix is not the realm's (as with Entra ID's verified domains): the
    # KDC finds her by enterprise name.
    printf 'dn: CN=erin,CN=Users,%s\nchangetype: modify\nreplace: userPrincipalName\nuserPrincipalName: %s\n' \
        "$BASE_DN" "$ERIN_UPN" | ldb_modify
    # "Account is sensitive and cannot be delegated": userAccountControl NOT_DELEGATED (0x100000).
    samba_tool user sensitive carol on >/dev/null

    # The connector: protocol transition (TRUSTED_TO_AUTH_FOR_DELEGATION) to the app's SPN only.
    samba_tool user create "$CONNECTOR_ACCOUNT" "$CONNECTOR_PASSWORD" >/dev/null
    samba_tool spn add "$CONNECTOR_SPN" "$CONNECTOR_ACCOUNT" >/dev/null
    samba_tool delegation for-any-protocol "$CONNECTOR_ACCOUNT" on >/dev/null
    samba_tool delegation add-service "$CONNECTOR_ACCOUNT" "$APP_SPN" >/dev/null
    set_supported_enctypes "$CONNECTOR_ACCOUNT" 24

    # The backend app: with AES listed the KDC encrypts its tickets with AES256 and an SPN export
    # carries AES keys (without it, exporting by SPN gives only an RC4 key and tickets are RC4).
    samba_tool user create "$APP_ACCOUNT" "$APP_PASSWORD" >/dev/null
    samba_tool spn add "$APP_SPN" "$APP_ACCOUNT" >/dev/null
    set_supported_enctypes "$APP_ACCOUNT" 28

    # A second backend the connector is not allowed to delegate to.
    samba_tool user create "$OTHER_ACCOUNT" "$OTHER_PASSWORD" >/dev/null
    samba_tool spn add "$OTHER_SPN" "$OTHER_ACCOUNT" >/dev/null
    set_supported_enctypes "$OTHER_ACCOUNT" 28

    export_keytab "$DIR/connector.keytab" "$CONNECTOR_ACCOUNT"
    export_keytab "$DIR/app.keytab" "$APP_SPN"
    export_keytab "$DIR/other.keytab" "$OTHER_SPN"
    echo "$((SECONDS - started))" >"$DIR/.provisioned"
    log "domain ready in $((SECONDS - started)) s"
}

write_krb5_conf() {
    local lifetimes=""
    if [ -n "${KRB_TESTBED_CLIENT_TICKET_LIFETIME:-}" ]; then
        lifetimes+="    ticket_lifetime = $KRB_TESTBED_CLIENT_TICKET_LIFETIME"$'\n'
    fi
    if [ -n "${KRB_TESTBED_CLIENT_RENEW_LIFETIME:-}" ]; then
        lifetimes+="    renew_lifetime = $KRB_TESTBED_CLIENT_RENEW_LIFETIME"$'\n'
    fi
    cat >"$DIR/krb5.conf.tmp" <<EOF
# Written by scripts/kerberos-testbed.sh for the test realm; use with KRB5_CONFIG=$DIR/krb5.conf.
[libdefaults]
    default_realm = $REALM
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    # TCP only: one KDC exchange is one log entry, and a stopped KDC fails fast (connection refused).
    udp_preference_limit = 1
    kdc_timeout = 3000
    max_retries = 1
    forwardable = true
${lifetimes}
[realms]
    $REALM = {
        kdc = 127.0.0.1:$KDC_PORT
        kpasswd_server = 127.0.0.1:$KPASSWD_PORT
    }

[domain_realm]
    .$DNS_DOMAIN = $REALM
    $DNS_DOMAIN = $REALM
EOF
    mv "$DIR/krb5.conf.tmp" "$DIR/krb5.conf"
    chmod 0644 "$DIR/krb5.conf"
}

# The ports of the running (or last started) KDC, so that summary, apache and count need no settings.
load_ports() {
    if [ -z "${KRB_TESTBED_KDC_PORT:-}" ] && [ -s "$DIR/ports" ]; then
        read -r KDC_PORT KPASSWD_PORT <"$DIR/ports"
    fi
}

samba_running_pid() {
    local pid
    pid=$(read_pid "$DIR/run/samba.pid")
    if pid_alive "$pid"; then echo "$pid"; fi
}

# The second word after `flag` in the command line of process `pid` (e.g. the file after -s or -f).
cmdline_argument() {
    tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | sed -n "/^$2\$/{n;p;q}"
}

# A run that was interrupted removes its directories but can leave its daemons running: a KDC and an
# Apache whose configuration file no longer exists belong to no test bed. Stop them.
reap_orphans() {
    local pid conf
    mit_reap_orphans
    # samba renames its processes ("samba: root process"), so its command line says nothing: a test bed's
    # samba writes its stderr to DIR/log/samba.log, which shows as deleted once DIR is gone.
    for pid in $(pgrep -x samba 2>/dev/null || true); do
        conf=$(readlink "/proc/$pid/fd/2" 2>/dev/null || true)
        case "$conf" in
        */log/samba.log\ \(deleted\)) log "stopping samba $pid of a removed test bed ($conf)"; kill -KILL "$pid" 2>/dev/null || true ;;
        esac
    done
    for pid in $(pgrep -x apache2 2>/dev/null || true); do
        conf=$(cmdline_argument "$pid" -f)
        case "$conf" in
        */apache/httpd.conf) [ -e "$conf" ] || { log "stopping apache2 $pid of a removed test bed ($conf)"; kill -KILL "$pid" 2>/dev/null || true; } ;;
        esac
    done
}

cmd_start() {
    DIR=$(abs_dir "${1:-}")
    reap_orphans
    kdc_kind >"$DIR/kdc.tmp" && mv "$DIR/kdc.tmp" "$DIR/kdc"
    if [ "$(kdc_kind)" = mit ]; then
        mit_cmd_start
        return
    fi
    command -v samba >/dev/null 2>&1 || die "samba is not installed: run $0 install"
    local pid
    pid=$(samba_running_pid)
    if [ -n "$pid" ]; then
        log "samba already running (pid $pid); settings of this start are not applied (stop it first)"
        unset KRB_TESTBED_KDC_PORT
        load_ports
    else
        # Another KDC (an earlier test bed left running) would answer instead of this one, with other keys.
        if tcp_open 127.0.0.1 "$KDC_PORT"; then
            die "127.0.0.1:$KDC_PORT is already in use (another test bed still running? stop it, or set KRB_TESTBED_KDC_PORT)"
        fi
        [ -f "$DIR/.provisioned" ] || provision
        echo "$KDC_PORT $KPASSWD_PORT" >"$DIR/ports"
        write_krb5_conf
        local started=$SECONDS
        mkdir -p "$DIR/run" "$DIR/log"
        rm -f "$DIR/run/samba.pid"
        samba -s "$DIR/etc/smb.conf" -D -M "${KRB_TESTBED_PROCESS_MODEL:-single}" \
            --option="server services=${KRB_TESTBED_SERVICES:-kdc}" \
            --option="pid directory=$DIR/run" \
            --option="log file=$DIR/log/samba.log" --option="max log size=0" \
            --option="log level=${KRB_TESTBED_LOG_LEVEL:-1 kerberos:3}" \
            --option="krb5 port=$KDC_PORT" --option="kpasswd port=$KPASSWD_PORT" \
            --option="kdc:user ticket lifetime=${KRB_TESTBED_USER_TICKET_HOURS:-10}" \
            --option="kdc:service ticket lifetime=${KRB_TESTBED_SERVICE_TICKET_HOURS:-10}" \
            --option="kdc:renewal lifetime=${KRB_TESTBED_RENEWAL_HOURS:-168}" \
            </dev/null >>"$DIR/log/samba.stdout" 2>&1 || die "samba failed to start; see $DIR/log/samba.log"
        wait_for_kdc "$started"
    fi
    write_krb5_conf_if_missing
    cmd_summary "$DIR"
}

write_krb5_conf_if_missing() {
    load_ports
    [ -f "$DIR/krb5.conf" ] || write_krb5_conf
}

wait_for_kdc() {
    local started=$1 i
    for ((i = 0; i < 300; i++)); do
        tcp_open 127.0.0.1 "$KDC_PORT" && break
        sleep 0.1
    done
    tcp_open 127.0.0.1 "$KDC_PORT" || die "KDC is not listening on 127.0.0.1:$KDC_PORT after 30 s; see $(kdc_log)"
    # The KDC answers for real: an AS exchange with the connector's keytab.
    local ccache
    ccache=$(mktemp)
    for ((i = 0; i < 50; i++)); do
        if KRB5_CONFIG="$DIR/krb5.conf" kinit -k -t "$DIR/connector.keytab" -c "FILE:$ccache" \
            "$CONNECTOR_ACCOUNT@$REALM" 2>/dev/null; then
            rm -f "$ccache"
            log "KDC answering on 127.0.0.1:$KDC_PORT ($((SECONDS - started)) s after start, pid $(kdc_pid))"
            return 0
        fi
        sleep 0.2
    done
    rm -f "$ccache"
    die "KDC on 127.0.0.1:$KDC_PORT does not issue tickets; see $(kdc_log)"
}

cmd_stop() {
    DIR=$(abs_dir "${1:-}")
    if [ "$(kdc_kind)" = mit ]; then
        mit_cmd_stop
        return
    fi
    local pid
    pid=$(samba_running_pid)
    if [ -z "$pid" ]; then
        log "samba is not running in $DIR"
        return 0
    fi
    stop_pid "$pid" 100
    rm -f "$DIR/run/samba.pid"
    log "samba stopped (pid $pid)"
}

cmd_summary() {
    DIR=$(abs_dir "${1:-}")
    load_ports
    cat <<EOF
KRB_TESTBED_DIR=$DIR
KRB5_CONFIG=$DIR/krb5.conf
REALM=$REALM
DOMAIN=$DOMAIN
KDC=127.0.0.1:$KDC_PORT
KDC_KIND=$(kdc_kind)
KDC_PID=$(kdc_pid)
KDC_LOG=$(kdc_log)
$([ "$(kdc_kind)" = samba ] && echo "ADMIN_PRINCIPAL=Administrator@$REALM")
$([ "$(kdc_kind)" = samba ] && echo "ADMIN_PASSWORD=$ADMIN_PASSWORD")
ALICE_PRINCIPAL=alice@$REALM
ALICE_PASSWORD=$ALICE_PASSWORD
BOB_PRINCIPAL=bob@$REALM
BOB_PASSWORD=$BOB_PASSWORD
CAROL_PRINCIPAL=carol@$REALM
CAROL_PASSWORD=$CAROL_PASSWORD
CAROL_SENSITIVE=true
$([ "$(kdc_kind)" = mit ] && echo "EXPIRED_PRINCIPAL=$MIT_EXPIRED_USER@$REALM")
CONNECTOR_PRINCIPAL=$CONNECTOR_ACCOUNT@$REALM
CONNECTOR_PASSWORD=$CONNECTOR_PASSWORD
$([ "$(kdc_kind)" = samba ] && echo "CONNECTOR_SPN=$CONNECTOR_SPN@$REALM")
CONNECTOR_KEYTAB=$DIR/connector.keytab
CONNECTOR_DELEGATES_TO=$APP_SPN@$REALM
APP_SPN=$APP_SPN@$REALM
$([ "$(kdc_kind)" = samba ] && echo "APP_ACCOUNT=$APP_ACCOUNT@$REALM")
APP_KEYTAB=$DIR/app.keytab
OTHER_SPN=$OTHER_SPN@$REALM
$([ "$(kdc_kind)" = samba ] && echo "OTHER_ACCOUNT=$OTHER_ACCOUNT@$REALM")
OTHER_KEYTAB=$DIR/other.keytab
EOF
    local port
    port=$(cat "$DIR/apache/port" 2>/dev/null || true)
    if [ -n "$port" ] && pid_alive "$(read_pid "$DIR/apache/run/httpd.pid")"; then
        cat <<EOF
APACHE_PORT=$port
APACHE_PID=$(read_pid "$DIR/apache/run/httpd.pid")
APACHE_HOST=app.corp.example.test
APACHE_WHOAMI_URL=http://app.corp.example.test:$port/whoami
APACHE_BOUND_WHOAMI_URL=http://app.corp.example.test:$port/bound/whoami
APACHE_HEALTH_URL=http://app.corp.example.test:$port/health
APACHE_ERROR_LOG=$DIR/apache/logs/error.log
APACHE_ACCESS_LOG=$DIR/apache/logs/access.log
EOF
    fi
}

# ---------------------------------------------------------------------------------------------------
# count: S4U exchanges in the KDC's log (needs the default log level "1 kerberos:3")

cmd_user() { # DIR enable|disable NAME: what an administrator does to an account in AD
    DIR=$(abs_dir "${1:-}")
    case "${2:-}" in enable | disable) ;; *) die "usage: $0 user DIR enable|disable NAME" ;; esac
    [ -n "${3:-}" ] || die "usage: $0 user DIR enable|disable NAME"
    if [ "$(kdc_kind)" = mit ]; then
        mit_user "$2" "$3"
        return
    fi
    samba_tool user "$2" "$3" >/dev/null || die "samba-tool user $2 $3 failed"
    log "user $3: $2d"
}

cmd_count() {
    DIR=$(abs_dir "${1:-}")
    local user=${2:-} log u=".*"
    log=$(kdc_log)
    [ -f "$log" ] || die "no KDC log at $log"
    if [ -n "$user" ]; then
        case "$user" in *@*) ;; *) user="$user@$REALM" ;; esac
        u=$(printf '%s' "$user" | sed 's/[.[\*^$/]/\\&/g')
    fi
    if [ "$(kdc_kind)" = mit ]; then
        mit_count "$u"
        return
    fi
    # AS-REQ (any principal, any result): one per "AS-REQ <client> from ..." line.
    echo "AS_REQ=$(grep -c -E "Kerberos: AS-REQ $u from " "$log" || true)"
    # S4U2Self tickets issued ("s4u2self <service> impersonating <user> to service <service>").
    echo "S4U2SELF=$(grep -c -E "Kerberos: s4u2self .* impersonating $u to service " "$log" || true)"
    # S4U2Self requests of any result and for any user: a service asking for a ticket to itself.
    echo "S4U2SELF_REQUESTS=$(grep -c -E 'Kerberos: TGS-REQ ([^ ]+) from [^ ]+ for \1 \[' "$log" || true)"
    # S4U2Self refused because the user does not exist.
    echo "S4U2SELF_UNKNOWN_USER=$(grep -c -E "Kerberos: S4U2Self principal to impersonate $u not found" "$log" || true)"
    # S4U2Proxy requests (any result): TGS-REQs with cname-in-addl-tkt; each is followed by one
    # audit line "TGS-REQ <RESULT> ... impersonatee=<user>".
    echo "S4U2PROXY=$(grep -c -E "Kerberos: TGS-REQ [A-Z_0-9-]+ .* impersonatee=$u( |$)" "$log" || true)"
    echo "S4U2PROXY_OK=$(grep -c -E "Kerberos: TGS-REQ SUCCESS .* impersonatee=$u( |$)" "$log" || true)"
    echo "S4U2PROXY_REFUSED=$(grep -E "Kerberos: TGS-REQ [A-Z_0-9-]+ .* impersonatee=$u( |$)" "$log" | grep -v -c "TGS-REQ SUCCESS" || true)"
}

# ---------------------------------------------------------------------------------------------------
# apache

gssapi_block() { # CONNECTION_BOUND(On|Off)
    cat <<EOF
    AuthType GSSAPI
    AuthName "Sallyport test backend"
    GssapiCredStore keytab:$DIR/app.keytab
    GssapiAllowedMech krb5
    GssapiPublishMech On
    GssapiUseSessions Off
    GssapiConnectionBound $1
    GssapiSignalPersistentAuth On
    Require valid-user
    SetEnvIf Authorization "^Negotiate ." NEGOTIATE_TOKEN=1
    Header set X-Remote-User "%{REMOTE_USER}e"
    ForceType text/plain
    SetOutputFilter INCLUDES
EOF
}

write_apache_conf() {
    local port=$1 a="$DIR/apache"
    local run_as=""
    mkdir -p "$a/run" "$a/logs" "$a/htdocs/bound" "$a/rcache"
    if [ "$(id -u)" -eq 0 ]; then
        chown www-data:www-data "$a/rcache"
        # httpd refuses to serve as root; its workers run as www-data and must read the keytab.
        run_as=$'User www-data\nGroup www-data'
        chgrp www-data "$DIR/app.keytab"
        chmod 0640 "$DIR/app.keytab"
        chmod o+x "$DIR"
        runuser -u www-data -- test -r "$DIR/app.keytab" ||
            die "www-data cannot read $DIR/app.keytab (is a parent directory of $DIR closed to others?)"
    fi
    printf 'ok\n' >"$a/htdocs/health"
    # Server-side includes: no process per request, and the body names the user, the mechanism,
    # whether this request carried a token, and the client port (to tell connections apart).
    cat >"$a/htdocs/whoami" <<'EOF'
user=<!--#echo var="REMOTE_USER" -->
gss_name=<!--#echo var="GSS_NAME" -->
gss_mech=<!--#echo var="GSS_MECH" -->
auth_type=<!--#echo var="AUTH_TYPE" -->
request_had_token=<!--#if expr="-n v('NEGOTIATE_TOKEN')" -->yes<!--#else -->no<!--#endif -->
remote_port=<!--#echo var="REMOTE_PORT" -->
path=<!--#echo var="DOCUMENT_URI" -->
server=apache
EOF
    cp "$a/htdocs/whoami" "$a/htdocs/bound/whoami"
    # 1 KiB files for the benchmark (scripts/bench.sh): /1k and /bound/1k need Negotiate, /open/1k does not.
    mkdir -p "$a/htdocs/open"
    for f in "$a/htdocs/1k" "$a/htdocs/bound/1k" "$a/htdocs/open/1k"; do head -c 1024 /dev/zero | tr '\0' a >"$f"; done
    cat >"$a/httpd.conf" <<EOF
# Written by scripts/kerberos-testbed.sh: a stand-alone httpd (no system configuration).
ServerRoot "$a"
ServerName app.corp.example.test
Listen 127.0.0.1:$port
PidFile "$a/run/httpd.pid"
DefaultRuntimeDir "$a/run"
Mutex file:$a/run default
ErrorLog "$a/logs/error.log"
LogLevel warn auth_gssapi:info
$run_as

LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authn_core_module /usr/lib/apache2/modules/mod_authn_core.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule authz_user_module /usr/lib/apache2/modules/mod_authz_user.so
LoadModule auth_gssapi_module /usr/lib/apache2/modules/mod_auth_gssapi.so
LoadModule headers_module /usr/lib/apache2/modules/mod_headers.so
LoadModule include_module /usr/lib/apache2/modules/mod_include.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
LoadModule setenvif_module /usr/lib/apache2/modules/mod_setenvif.so

# Sized so that the tests' parallel users never make the event MPM close keep-alive connections for lack
# of workers (it does so near MaxRequestWorkers, which looks like a backend dropping requests).
StartServers 2
ServerLimit 4
ThreadsPerChild 64
MaxRequestWorkers 256
MinSpareThreads 64
MaxSpareThreads 256
AsyncRequestWorkerFactor 4
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 60
TypesConfig /etc/mime.types

# Never log the Authorization header: it carries Kerberos tickets.
LogFormat "%a:%{remote}p %u \"%r\" %>s %D" testbed
CustomLog "$a/logs/access.log" testbed

DocumentRoot "$a/htdocs"
<Directory "$a/htdocs">
    Options +Includes
    AllowOverride None
</Directory>

# Every path requires Negotiate except /health. Tokens may be raw Kerberos (krb5 mechanism OID) or
# SPNEGO wrapping krb5: GssapiAllowedMech krb5 limits what SPNEGO may negotiate (no NTLMSSP, no IAKERB).
# mod_auth_gssapi does not inherit its settings into a nested <Location>: each block is complete.
<Location "/">
$(gssapi_block Off)
</Location>

# The same, but an authenticated connection stays authenticated: later requests on it need no token.
<Location "/bound/">
$(gssapi_block On)
</Location>

<Location "/open/">
    AuthType None
    Require all granted
</Location>

<Location "/health">
    AuthType None
    Require all granted
</Location>
EOF
    echo "$port" >"$a/port"
}

apache_pid() {
    local pid
    pid=$(read_pid "$DIR/apache/run/httpd.pid")
    if pid_alive "$pid"; then echo "$pid"; fi
}

cmd_apache() {
    DIR=$(abs_dir "${1:-}")
    local port=${2:-}
    [[ "$port" =~ ^[0-9]+$ ]] || usage
    [ -f "$DIR/app.keytab" ] || die "no $DIR/app.keytab: run $0 start $DIR first"
    write_krb5_conf_if_missing
    if [ -n "$(apache_pid)" ]; then
        cmd_apache_stop "$DIR"
    fi
    write_apache_conf "$port"
    rm -f "$DIR/apache/run/httpd.pid"
    KRB5_CONFIG="$DIR/krb5.conf" KRB5RCACHEDIR="$DIR/apache/rcache" \
        /usr/sbin/apache2 -f "$DIR/apache/httpd.conf" -k start </dev/null >>"$DIR/apache/logs/stdout.log" 2>&1 ||
        die "apache2 failed to start; see $DIR/apache/logs/stdout.log and error.log"
    local i
    for ((i = 0; i < 100; i++)); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$port/health" 2>/dev/null; then
            log "apache listening on 127.0.0.1:$port (pid $(apache_pid))"
            cmd_summary "$DIR" | grep '^APACHE_'
            return 0
        fi
        sleep 0.1
    done
    die "apache2 does not answer on 127.0.0.1:$port; see $DIR/apache/logs/error.log"
}

cmd_apache_stop() {
    DIR=$(abs_dir "${1:-}")
    local pid
    pid=$(apache_pid)
    if [ -z "$pid" ]; then
        log "apache is not running in $DIR"
        return 0
    fi
    stop_pid "$pid" 100
    rm -f "$DIR/apache/run/httpd.pid"
    log "apache stopped (pid $pid)"
}

# ---------------------------------------------------------------------------------------------------
# verify: the whole chain with MIT tools, curl and python3-gssapi, without Sallyport

cmd_verify() {
    DIR=$(abs_dir "${1:-}")
    local port=${2:-}
    [[ "$port" =~ ^[0-9]+$ ]] || usage
    export KRB5_CONFIG="$DIR/krb5.conf"
    local failures=0
    VERIFY_WORK=$(mktemp -d)
    trap 'rm -rf "$VERIFY_WORK"' EXIT
    local work=$VERIFY_WORK
    local url="http://app.corp.example.test:$port"
    local resolve=(--resolve "app.corp.example.test:$port:127.0.0.1")
    check() { # NAME COMMAND...: prints "ok NAME" or "FAIL NAME"
        local name=$1
        shift
        if "$@" >"$work/out" 2>&1; then
            echo "ok   $name"
        else
            echo "FAIL $name"
            sed 's/^/     | /' "$work/out"
            failures=$((failures + 1))
        fi
    }
    expect_fail() { # NAME PATTERN COMMAND...
        local name=$1 pattern=$2
        shift 2
        if "$@" >"$work/out" 2>&1; then
            echo "FAIL $name (succeeded)"
            failures=$((failures + 1))
        elif grep -q -- "$pattern" "$work/out"; then
            echo "ok   $name: $(grep -- "$pattern" "$work/out" | head -n1)"
        else
            echo "FAIL $name (not '$pattern')"
            sed 's/^/     | /' "$work/out"
            failures=$((failures + 1))
        fi
    }
    local conn="FILE:$work/connector.ccache"
    check "kinit -k connector" kinit -k -t "$DIR/connector.keytab" -c "$conn" "$CONNECTOR_ACCOUNT"
    check "S4U2Self+S4U2Proxy alice -> $APP_SPN (kvno -U alice -P, S4U2Self ticket checked with connector keytab)" \
        kvno -c "$conn" -k "$DIR/connector.keytab" -U alice -P "$APP_SPN"
    check "S4U2Self+S4U2Proxy bob -> $APP_SPN into its own ccache (kvno -I bob -P --out-cache)" \
        kvno -c "$conn" -I bob -P --out-cache "FILE:$work/bob.ccache" "$APP_SPN"
    expect_fail "carol (sensitive) refused" "KDC can't fulfill requested option" \
        kvno -c "$conn" -I carol -P "$APP_SPN"
    expect_fail "$OTHER_SPN (not in delegation list) refused" "KDC can't fulfill requested option" \
        kvno -c "$conn" -I alice -P "$OTHER_SPN"
    expect_fail "unknown user refused" "Client not found in Kerberos database" \
        kvno -c "$conn" -I nosuchuser -P "$APP_SPN"
    if ! curl -fsS -o /dev/null "${resolve[@]}" "$url/health"; then
        echo "FAIL apache does not answer on 127.0.0.1:$port (run: $0 apache $DIR $port)"
        return 1
    fi
    echo "ok   health without authentication"
    expect_fail "whoami without a ticket is 401" "401" \
        curl -fsS -o /dev/null -w '%{http_code}' "${resolve[@]}" "$url/whoami"
    # curl --negotiate with the ccache that holds only bob's delegated service ticket (no TGT).
    check "curl --negotiate with bob's S4U2Proxy ticket" env KRB5CCNAME="FILE:$work/bob.ccache" \
        curl -fsS --negotiate -u : "${resolve[@]}" "$url/whoami"
    if ! grep -q "^user=bob@$REALM" "$work/out"; then
        echo "FAIL apache did not report bob@$REALM"
        failures=$((failures + 1))
    fi
    # A password login of alice, then SPNEGO through curl.
    check "kinit alice (password)" sh -c "printf '%s\n' '$ALICE_PASSWORD' | kinit -c 'FILE:$work/alice.ccache' alice >/dev/null"
    check "curl --negotiate as alice" env KRB5CCNAME="FILE:$work/alice.ccache" \
        curl -fsS --negotiate -u : "${resolve[@]}" "$url/whoami"
    if ! grep -q "^user=alice@$REALM" "$work/out"; then
        echo "FAIL apache did not report alice@$REALM"
        failures=$((failures + 1))
    fi
    # Impersonation through GSS-API itself, as the connector will do it, with both token formats.
    if /usr/bin/python3 -c 'import gssapi' 2>/dev/null; then
        local mech
        for mech in krb5 spnego; do
            check "gss_acquire_cred_impersonate_name alice + $mech token -> apache" \
                env KRB5CCNAME="$conn" /usr/bin/python3 - "$mech" "$url" "$port" <<'PY'
import base64, http.client, sys
import gssapi
from gssapi.raw import acquire_cred_impersonate_name
mech_name, url, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
mech = gssapi.MechType.kerberos if mech_name == "krb5" else gssapi.OID.from_int_seq("1.3.6.1.5.5.2")
# Both credentials are acquired for the mechanism of the token. An impersonated credential for krb5
# alone, used for a SPNEGO context, makes SPNEGO fall back to the default credential: the connector's
# own identity, silently.
me = gssapi.Credentials(usage="initiate", mechs=[mech])
user = gssapi.Name("alice@CORP.EXAMPLE.TEST", gssapi.NameType.kerberos_principal)
imp = acquire_cred_impersonate_name(me, user, None, [mech], "initiate").creds
spn = gssapi.Name("HTTP/app.corp.example.test@CORP.EXAMPLE.TEST", gssapi.NameType.kerberos_principal)
ctx = gssapi.SecurityContext(name=spn, creds=gssapi.Credentials(imp), mech=mech, usage="initiate",
                             flags=gssapi.RequirementFlag.mutual_authentication)
token = ctx.step()
c = http.client.HTTPConnection("127.0.0.1", port)
c.request("GET", "/whoami", headers={"Host": "app.corp.example.test",
                                       "Authorization": "Negotiate " + base64.b64encode(token).decode()})
r = c.getresponse()
body = r.read().decode()
print(r.status, body)
www = r.getheader("WWW-Authenticate") or ""
if www.startswith("Negotiate "):
    ctx.step(base64.b64decode(www.split(" ", 1)[1]))
print("mutual auth complete:", ctx.complete)
sys.exit(0 if r.status == 200 and "user=alice@CORP.EXAMPLE.TEST" in body and ctx.complete else 1)
PY
        done
    else
        echo "skip python3-gssapi not installed: raw krb5 token check skipped"
    fi
    echo "KDC log counts:"
    cmd_count "$DIR" | sed 's/^/     /'
    echo "$failures failures"
    [ "$failures" -eq 0 ]
}

# ---------------------------------------------------------------------------------------------------

main() {
    local command=${1:-}
    [ $# -gt 0 ] && shift
    case "$command" in
    install) cmd_install "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    summary) cmd_summary "$@" ;;
    count) cmd_count "$@" ;;
    apache) cmd_apache "$@" ;;
    apache-stop) cmd_apache_stop "$@" ;;
    user) cmd_user "$@" ;;
    verify) cmd_verify "$@" ;;
    *) usage ;;
    esac
}

main "$@"
