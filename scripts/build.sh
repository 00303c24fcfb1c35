#!/usr/bin/env bash
# Builds the `sallyport` executable and libSallyportPluginAPI.so (what SSO handler plugins link against; the
# connector loads it from the directory `sallyport` is in), side by side in .build/<configuration>/.
# A plain `swift build` does not build the library: SwiftPM builds a dynamic library product only when asked.
#
#   scripts/build.sh                        release build
#   scripts/build.sh --configuration debug
#   scripts/build.sh --install /opt/sallyport   also copies both into /opt/sallyport/ (link bin/sallyport to it)
set -euo pipefail
configuration=release
install=""
while [ $# -gt 0 ]; do
    case "$1" in
        --configuration) configuration="$2"; shift 2 ;;
        --install) install="$2"; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "scripts/build.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
cd "$(dirname "$0")/.."
swift build -c "$configuration" --product sallyport
swift build -c "$configuration" --product SallyportPluginAPI
bin="$(swift build -c "$configuration" --show-bin-path)"
echo "built $bin/sallyport and $bin/libSallyportPluginAPI.so"
if [ -n "$install" ]; then
    mkdir -p "$install"
    install -m 0755 "$bin/sallyport" "$install/sallyport"
    install -m 0644 "$bin/libSallyportPluginAPI.so" "$install/libSallyportPluginAPI.so"
    echo "installed into $install (sallyport finds the plugin API library next to itself)"
fi
