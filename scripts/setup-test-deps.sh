#!/usr/bin/env bash
# Installs what the end-to-end tests need: nginx with the DAV and echo modules, curl, openssl, procps, h2load,
# and a Python virtual environment (/opt/sallyport-test-venv) with `websockets` for the WebSocket echo server
# and client and, for the OIDC sign-in tests, pinned `oidc-provider-mock` and `selenium` next to Debian's
# Chromium with its WebDriver.
# Idempotent and non-interactive; runs `apt-get update` only when a package is missing.
# Run as root (or with sudo available) on Debian 12.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# nginx: Debian 12's `nginx` package carries the DAV module (PUT uploads) built in.
# libnginx-mod-http-echo: `echo_request_body` for POST /echo, `$echo_client_request_headers` for GET /headers.
apt_packages=(nginx libnginx-mod-http-echo curl openssl procps)
# h2load (nghttp2-client): a second HTTP/2 client for the many-requests edge test; with wrk, the load
# generators of scripts/bench.sh (whose smoke run is part of the suite).
apt_packages+=(nghttp2-client wrk)
# OIDC sign-in peers (Resources/oidc_provider.py, browser_signin.py): headless Chromium driven through
# chromedriver, certutil (libnss3-tools) to trust a test CA in Chromium's NSS database, and a font.
apt_packages+=(chromium chromium-driver libnss3-tools fonts-dejavu-core)
# Debian's Python with venv: the Python peers get a virtual environment of their own (see below).
apt_packages+=(python3 python3-venv)
# Network namespaces for the failover tests (NetworkNamespace): ip (iproute2) for namespaces and veth pairs,
# nft (nftables) to cut a connector off silently. The nftables service stays off; rules live in the namespaces.
apt_packages+=(iproute2 nftables)
# Outbound proxy tests (ForwardProxy): tinyproxy, a real HTTP CONNECT proxy with Basic authentication. Like
# nginx, its system service is not started at install (policy-rc.d below): each test runs its own instance.
apt_packages+=(tinyproxy)
# Several relays (PostgresServer, HAProxy): PostgreSQL holds their shared state and HAProxy balances users and
# connectors across them. Both services stay off (policy-rc.d below); each test starts its own instances.
apt_packages+=(postgresql haproxy)
# The package tests (scripts/package.sh, dpkg, systemd-analyze verify on the units, deployment.md's commands as
# written, which use sudo -u sallyport): patchelf, systemd and sudo.
apt_packages+=(patchelf systemd sudo)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo --preserve-env=DEBIAN_FRONTEND "$@"
    else
        echo "setup-test-deps: need root (or sudo) to run: $*" >&2
        exit 1
    fi
}

missing=()
for package in "${apt_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup-test-deps: installing Debian packages: ${missing[*]}"
    as_root apt-get update -q
    # Keep apt from starting the system nginx on port 80: the tests run their own nginx instances.
    added_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod 0755 /usr/sbin/policy-rc.d
        added_policy=1
    fi
    status=0
    as_root apt-get install -y -q --no-install-recommends "${missing[@]}" || status=$?
    if [ "$added_policy" -eq 1 ]; then
        as_root rm -f /usr/sbin/policy-rc.d
    fi
    if [ "$status" -ne 0 ]; then
        echo "setup-test-deps: apt-get install failed with status $status" >&2
        exit "$status"
    fi
else
    echo "setup-test-deps: Debian packages already installed: ${apt_packages[*]}"
fi

# The tests start nginx themselves; the Debian package's copy may not be running or enabled.
if [ ! -x /usr/sbin/nginx ]; then
    echo "setup-test-deps: /usr/sbin/nginx is missing after installation" >&2
    exit 1
fi
if [ ! -e /usr/lib/nginx/modules/ngx_http_echo_module.so ]; then
    echo "setup-test-deps: /usr/lib/nginx/modules/ngx_http_echo_module.so is missing (libnginx-mod-http-echo)" >&2
    exit 1
fi

# The Python peers run in a virtual environment made from Debian's own Python (python3-venv): a stock Debian 12
# marks its Python as externally managed (PEP 668) and has no pip. The tests use it (EndToEnd.python).
# oidc_provider.py extends internals of oidc-provider-mock 0.3.4, which runs on authlib's deprecated
# `authlib.jose`; Selenium uses /usr/bin/chromedriver and never downloads one; h2 speaks raw HTTP/2 frames for
# the adversarial tests. All in one pip call, so the
# pins hold together.
venv="${SALLYPORT_TEST_VENV:-/opt/sallyport-test-venv}"
python_requirements=(websockets==15.0.1 oidc-provider-mock==0.3.4 authlib==1.9.9 selenium==4.51.0 h2==4.2.0)
if [ ! -x "$venv/bin/python3" ]; then
    echo "setup-test-deps: creating the Python virtual environment $venv"
    as_root /usr/bin/python3 -m venv "$venv"
fi
venv_missing=()
for requirement in "${python_requirements[@]}"; do
    if ! "$venv/bin/python3" -c "import importlib.metadata as m, sys; n, v = sys.argv[1].split('=='); sys.exit(m.version(n) != v)" \
        "$requirement" 2>/dev/null; then
        venv_missing+=("$requirement")
    fi
done
if [ "${#venv_missing[@]}" -gt 0 ]; then
    echo "setup-test-deps: installing Python packages into $venv: ${python_requirements[*]}"
    as_root "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check "${python_requirements[@]}"
else
    echo "setup-test-deps: Python packages already installed in $venv: ${python_requirements[*]}"
fi
for tool in /usr/bin/chromedriver /usr/lib/chromium/chromium /usr/bin/certutil; do
    if [ ! -x "$tool" ]; then
        echo "setup-test-deps: $tool is missing after installation" >&2
        exit 1
    fi
done

# Kerberos test bed (Samba AD KDC, Apache mod_auth_gssapi) and the GSS-API headers Sallyport builds against.
if [ "$(id -u)" -eq 0 ]; then
    bash "$(dirname "$0")/kerberos-testbed.sh" install
else
    sudo bash "$(dirname "$0")/kerberos-testbed.sh" install
fi

echo "setup-test-deps: ready (nginx $(/usr/sbin/nginx -v 2>&1 | sed 's/.*nginx\///'), curl $(curl --version | head -n1 | cut -d' ' -f2))"
