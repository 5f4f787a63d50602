#!/usr/bin/env bash
# Runs the whole test suite. The integration tests drive real clients (ffmpeg,
# ffprobe, rtmpdump) against the server, so install them first if any is missing
# (Debian/Ubuntu). Extra arguments are passed on to `cargo test`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
for tool in ffmpeg ffprobe rtmpdump; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done

if ((${#missing[@]} > 0)); then
    echo "test.sh: missing ${missing[*]}; installing ffmpeg and rtmpdump" >&2
    if [[ $(id -u) -eq 0 ]]; then
        sudo=()
    elif command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "test.sh: not root and sudo is not available; install ffmpeg and rtmpdump" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends ffmpeg rtmpdump
fi

cargo test --all-targets "$@"
