#!/usr/bin/env bash
# Builds the sallyport Debian package from a build of this checkout:
#   /usr/bin/sallyport                          the one executable (relay, connector, CLI)
#   /usr/lib/sallyport/libSallyportPluginAPI.so what SSO handler plugins link against (docs/plugins.md)
#   /usr/lib/sallyport/libswift*.so, …          the Swift runtime libraries they use (one copy, shared with
#                                               plugins), found through the executable's RUNPATH
#   /usr/lib/sallyport/plugins/                 the plugins directory the sample connector.yaml names
#   /lib/systemd/system/sallyport-{relay,connector}.service, sallyport-relay.socket
#   /usr/share/doc/sallyport/                   README, docs/*, examples/ (relay.yaml, connector.yaml, apps/)
# and, at install, the `sallyport` system user, /etc/sallyport (0750, sallyport) and /var/lib/sallyport
# (0750, sallyport). Units are installed, never enabled or started: configure first (README, "Install").
#
# Usage: scripts/package.sh [--configuration release|debug] [--output DIR] [--bin DIR]
#   release (the default) is what you ship; debug packages a debug build. --bin takes `sallyport` and
#   libSallyportPluginAPI.so from DIR as they are, without running SwiftPM (the package test does this: a
#   build inside `swift test` would wait for the lock that `swift test` holds).
# Prints the path of the .deb it wrote.
set -euo pipefail

configuration=release
output=.build/packages
bin=""
while [ $# -gt 0 ]; do
    case "$1" in
        --configuration) configuration="$2"; shift 2 ;;
        --output) output="$2"; shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "package.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$configuration" in release|debug) ;; *) echo "package.sh: --configuration must be release or debug" >&2; exit 2 ;; esac

if ! command -v patchelf >/dev/null 2>&1; then
    echo "package.sh: installing patchelf (Debian package) to point the executable at /usr/lib/sallyport" >&2
    if [ "$(id -u)" -eq 0 ]; then apt-get install -y -q --no-install-recommends patchelf >&2
    else sudo apt-get install -y -q --no-install-recommends patchelf >&2; fi
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if [ -z "$bin" ]; then
    swift build -c "$configuration" --product sallyport >&2
    swift build -c "$configuration" --product SallyportPluginAPI >&2
    bin="$(swift build -c "$configuration" --show-bin-path)"
fi
for product in sallyport libSallyportPluginAPI.so; do
    [ -e "$bin/$product" ] || { echo "package.sh: $bin/$product is missing: build it (swift build --product …)" >&2; exit 1; }
done

version="$("$bin/sallyport" --version)"
architecture="$(dpkg --print-architecture)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

install -d -m 0755 "$stage/DEBIAN" "$stage/usr/bin" "$stage/usr/lib/sallyport/plugins" "$stage/lib/systemd/system" \
    "$stage/usr/share/doc/sallyport/examples/apps"
install -m 0755 "$bin/sallyport" "$stage/usr/bin/sallyport"
install -m 0644 "$bin/libSallyportPluginAPI.so" "$stage/usr/lib/sallyport/libSallyportPluginAPI.so"
# The Swift runtime: the libraries of the toolchain the two link against, copied beside the API library; the
# executable and the API library look there first (and only there).
toolchain_libraries="$(ldd "$bin/sallyport" "$bin/libSallyportPluginAPI.so" | awk '$3 ~ /\/lib\/swift\/linux\// {print $3}' | sort -u)"
for library in $toolchain_libraries; do
    install -m 0644 "$library" "$stage/usr/lib/sallyport/"
done
if [ "$configuration" = release ]; then
    strip --strip-unneeded "$stage/usr/bin/sallyport" "$stage/usr/lib/sallyport/libSallyportPluginAPI.so"
fi
patchelf --set-rpath /usr/lib/sallyport "$stage/usr/bin/sallyport"
patchelf --set-rpath /usr/lib/sallyport "$stage/usr/lib/sallyport/libSallyportPluginAPI.so"
install -m 0644 config/systemd/sallyport-relay.service config/systemd/sallyport-relay.socket config/systemd/sallyport-connector.service \
    "$stage/lib/systemd/system/"
install -m 0644 README.md docs/*.md docs/*.json "$stage/usr/share/doc/sallyport/"
install -m 0644 config/relay.yaml config/connector.yaml "$stage/usr/share/doc/sallyport/examples/"
install -m 0644 config/apps/*.yaml "$stage/usr/share/doc/sallyport/examples/apps/"

# What the executable links from Debian (ldd, outside the Swift runtime copied above).
cat > "$stage/DEBIAN/control" <<CONTROL
Package: sallyport
Version: ${version}
Architecture: ${architecture}
Maintainer: Sallyport developers <sallyport@example.org>
Section: net
Priority: optional
Depends: libc6, libstdc++6, libgcc-s1, libkrb5-3, libgssapi-krb5-2, zlib1g, libcurl4, adduser, ca-certificates
Recommends: krb5-user
Description: self-hosted application proxy: publish internal web apps without inbound ports
 Sallyport publishes internal web applications to remote users through an outbound-only, mutually
 authenticated tunnel. The relay pre-authenticates users (OIDC or trusted JWTs) and routes requests to
 connectors inside the private network, which sign users in to the apps (headers, Kerberos constrained
 delegation, plugins).
CONTROL

cat > "$stage/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    if ! getent passwd sallyport >/dev/null; then
        adduser --system --group --home /var/lib/sallyport --no-create-home --quiet sallyport
    fi
    install -d -m 0750 -o sallyport -g sallyport /etc/sallyport /var/lib/sallyport
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null || true
        # An upgrade: running services move to the new version. The relay's sockets stay open meanwhile
        # (sallyport-relay.socket), and a connector drains its tunnels before it stops.
        if [ -n "$2" ]; then systemctl try-restart sallyport-relay.service sallyport-connector.service >/dev/null || true; fi
    fi
fi
exit 0
POSTINST
cat > "$stage/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
    systemctl stop sallyport-relay.service sallyport-relay.socket sallyport-connector.service >/dev/null 2>&1 || true
fi
exit 0
PRERM
cat > "$stage/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null || true; fi
if [ "$1" = purge ]; then
    # Configuration, keys and the state database are the administrator's: purge removes them only when empty.
    rmdir /etc/sallyport /var/lib/sallyport 2>/dev/null || true
    if getent passwd sallyport >/dev/null && command -v deluser >/dev/null; then deluser --system --quiet sallyport || true; fi
fi
exit 0
POSTRM
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"

mkdir -p "$output"
deb="$output/sallyport_${version}_${architecture}.deb"
# debug builds are large and only for tests: fast compression.
compression=()
if [ "$configuration" = debug ]; then compression=(-Zgzip -z1); fi
dpkg-deb --root-owner-group "${compression[@]}" --build "$stage" "$deb" >&2
echo "$deb"
