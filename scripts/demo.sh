#!/usr/bin/env bash
# Builds Sallyport and runs the embedded demo: a relay, a connector and a sample app in one process.
# For a fresh Debian 12 machine with the Swift toolchain on PATH. Extra arguments go to `sallyport demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
# Sallyport builds against MIT Kerberos' GSS-API (libkrb5-dev, found through pkg-config); curl is installed
# so the printed command works as printed.
missing=()
for package in curl ca-certificates libkrb5-dev pkg-config; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"
    else sudo apt-get update -q && sudo apt-get install -y -q --no-install-recommends "${missing[@]}"; fi
fi

swift build --product sallyport
exec .build/debug/sallyport demo "$@"
