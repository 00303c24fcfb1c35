#!/usr/bin/env bash
# Installs everything the tests need (Debian packages, Python packages), builds, and runs every test:
# unit tests and the end-to-end tests against real nginx, curl and WebSocket peers on loopback; then, for a
# full run (no arguments), fuzzes each parser of untrusted bytes for SALLYPORT_FUZZ_SECONDS (default 30; 0 skips).
# For a fresh Debian 12 machine with the Swift toolchain on PATH; run as root or with sudo.
# Each phase says how long it took, so a slow CI run says where its time went.
set -euo pipefail
cd "$(dirname "$0")/.."

phase_started=$SECONDS
phase() {
    echo "test.sh: $1 took $((SECONDS - phase_started)) s (total $SECONDS s)"
    phase_started=$SECONDS
}

bash scripts/setup-test-deps.sh
phase "set-up"
swift build --build-tests
# sallyport and the plugin API library side by side, as docs/plugins.md builds them (the plugin and package
# tests use the library).
bash scripts/build.sh --configuration debug
phase "build"
if [ "$#" -eq 0 ]; then
    # InProcessTests run a relay and connectors inside the test process; beside the store tests in one process
    # they compete for NIO's singleton thread pool (one thread per core: SQLite calls, getaddrinfo) and stall, so
    # they get a process of their own.
    swift test --skip-build --skip InProcessTests
    swift test --skip-build --filter InProcessTests
else
    swift test --skip-build "$@"
fi
phase "tests"
if [ "$#" -eq 0 ] && [ "${SALLYPORT_FUZZ_SECONDS:-30}" != 0 ]; then
    bash scripts/fuzz.sh "${SALLYPORT_FUZZ_SECONDS:-30}"
    phase "fuzzing"
fi
