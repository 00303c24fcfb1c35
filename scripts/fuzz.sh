#!/usr/bin/env bash
# Fuzzes the parsers of untrusted bytes (Sources/SallyportFuzzTargets) under libFuzzer with AddressSanitizer.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]     each target for SECONDS (default 60), one per core at a time
#        scripts/fuzz.sh --merge [TARGET...]        fold new inputs found into the kept corpus, minimised
#
# Targets: app-file relay-file connector-file control-stream identity-field. Each starts from its corpus in
# Tests/Fuzz/corpus/TARGET (kept in the repository; `sallyport-fuzz --write-seeds config Tests/Fuzz/corpus`
# writes the seeds) and records new inputs in .build/fuzz/corpus/TARGET. A crash, a hang (an input that takes
# over 10 s) or an allocation over 512 MiB fails the run; the input is left in .build/fuzz/artifacts/TARGET/
# and `sallyport-fuzz TARGET FILE` (a normal build) replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

merge=false
if [ "${1:-}" = "--merge" ]; then merge=true; shift; fi
seconds=60
if [ "$#" -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then seconds="$1"; shift; fi
[ "$seconds" -gt 0 ] || { echo "fuzz: SECONDS must be at least 1 (libFuzzer takes 0 as no limit)" >&2; exit 2; }
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then targets=(app-file relay-file connector-file control-stream identity-field); fi

# Swift code gets coverage and ASan from -sanitize; the C code on the way (libyaml in Yams) from -fsanitize.
flags=(--product sallyport-fuzz --build-path .build/fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING
    -Xcc -fsanitize=fuzzer-no-link,address)
echo "fuzz: building sallyport-fuzz with libFuzzer and AddressSanitizer"
swift build "${flags[@]}" 2>&1 | grep -v "Cannot export local symbol" || true
binary="$(swift build "${flags[@]}" --show-bin-path)/sallyport-fuzz"
[ -x "$binary" ] || { echo "fuzz: the build failed" >&2; exit 1; }

# One target: its time on one core. Targets run side by side, one per core (libFuzzer is single-threaded), so
# each gets the same time to itself as it would alone.
fuzz_target() {
    local target="$1"
    local kept="Tests/Fuzz/corpus/$target" found=".build/fuzz/corpus/$target" artifacts=".build/fuzz/artifacts/$target/"
    mkdir -p "$kept" "$found" "$artifacts"
    if $merge; then
        SALLYPORT_FUZZ_TARGET="$target" "$binary" -merge=1 "$kept" "$found" 2>&1 | tail -n 2
        return 0
    fi
    if ! SALLYPORT_FUZZ_TARGET="$target" "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
        -max_len=65536 -artifact_prefix="$artifacts" -print_final_stats=1 "$found" "$kept" > ".build/fuzz/$target.log" 2>&1; then
        echo "fuzz: $target FAILED; the input is in $artifacts, the log in .build/fuzz/$target.log:" >&2
        grep -E "ERROR|Fatal error|==[0-9]+==|SUMMARY|precondition" ".build/fuzz/$target.log" | head -n 20 >&2 || true
        return 1
    fi
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" ".build/fuzz/$target.log" | tr '\n' ' ' | sed "s/^/fuzz: $target ok: /"
    echo
}

status=0
parallel="$(nproc)"
if $merge; then parallel=1; fi
running=0
for target in "${targets[@]}"; do
    if [ "$running" -ge "$parallel" ]; then
        wait -n || status=1
        running=$((running - 1))
    fi
    $merge || echo "fuzz: $target for ${seconds}s"
    fuzz_target "$target" &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
done
exit "$status"
