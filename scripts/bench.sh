#!/usr/bin/env bash
# Measures Sallyport beside nginx on this machine, in one run, and writes the results into docs/performance.md:
# nginx as a one-hop reverse proxy; nginx → mutual TLS → nginx (the same two hops Sallyport makes); Sallyport
# passthrough, JWT pre-authentication with header SSO, a trivial plugin handler in its host process and in
# process, and KCD against the Kerberos test bed's Apache; HTTP/1.1 (wrk) and HTTP/2 (h2load), 1 KiB and 1 MiB
# bodies; a 1 GiB transfer each way; the connector's memory idle and with 1,000 open streams; cold KCD latency.
#
#   scripts/bench.sh                    everything (about 10 minutes after the build), results into docs/performance.md
#   scripts/bench.sh --seconds 30       longer runs
#   scripts/bench.sh --no-kcd           without the Kerberos test bed
#   scripts/bench.sh --smoke            one second per case, to check that the benchmark works (writes nothing)
#
# For a fresh Debian 12 machine with the Swift toolchain on PATH; run as root (or with sudo available): it installs
# nginx, wrk, h2load and the test bed's packages through scripts/setup-test-deps.sh. Benchmarks are not tests: the
# suite never times anything; CI does not run this script.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-test-deps.sh >/dev/null
bash scripts/build.sh --configuration release >/dev/null
swift build -c release --product sallyport-bench >/dev/null
bin="$(swift build -c release --show-bin-path)"

output=(--output docs/performance.md)
for argument in "$@"; do
    [ "$argument" = --smoke ] && output=()
done
exec "$bin/sallyport-bench" "${output[@]}" "$@"
