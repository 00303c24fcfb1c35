#!/usr/bin/env bash
# Builds Sallyport and runs the embedded demo: a relay, a connector and a sample app in one process.
# For a fresh Debian 12 machine with the Swift toolchain on PATH. Extra arguments go to `sallyport demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
# The demo needs nothing beyond the toolchain; curl is installed so the printed command works as printed.
if ! command -v curl >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then apt-get update -q && apt-get install -y -q --no-install-recommends curl ca-certificates
    else sudo apt-get update -q && sudo apt-get install -y -q --no-install-recommends curl ca-certificates; fi
fi

swift build --product sallyport
exec .build/debug/sallyport demo "$@"
