#!/usr/bin/env bash
# Installs everything the tests need (Debian packages, Python packages), builds, and runs every test:
# unit tests and the end-to-end tests against real nginx, curl and WebSocket peers on loopback.
# For a fresh Debian 12 machine with the Swift toolchain on PATH; run as root or with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-test-deps.sh
swift build --build-tests
swift test --skip-build "$@"
