#!/usr/bin/env bash
# Fuzzes the protocol core with cargo-fuzz (libFuzzer): every target in tests/fuzz,
# or the ones named, for SECONDS each (default 60; also FUZZ_SECONDS).
#
#   scripts/fuzz.sh                    # all targets, 60 s each
#   scripts/fuzz.sh 300 session amf3   # two targets, 5 min each
#   FUZZ_JOBS=2 scripts/fuzz.sh 600    # two fuzzing processes per target
#
# Seed corpora are made from the recorded sessions in tests/fixtures/sessions and
# kept in tests/fuzz/corpus/TARGET (git-ignored), so later runs start where earlier
# ones stopped. Crashes land in tests/fuzz/artifacts/TARGET; replay one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz TARGET ARTIFACT
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# provide them, so no nightly toolchain is required.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${FUZZ_SECONDS:-60}
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    seconds=$1
    shift
fi
jobs=${FUZZ_JOBS:-1}
fuzz_dir=tests/fuzz
all_targets=(chunk_reader amf0 amf3 handshake command session)
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=("${all_targets[@]}")
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz
fi
# libFuzzer itself is C++ that libfuzzer-sys compiles.
if ! command -v c++ >/dev/null 2>&1; then
    echo "fuzz.sh: a C++ compiler is needed (apt-get install g++)" >&2
    exit 1
fi

export RUSTC_BOOTSTRAP=1

echo "fuzz.sh: writing seed corpora from tests/fixtures/sessions" >&2
cargo run --quiet --release --manifest-path "$fuzz_dir/Cargo.toml" \
    --example seed_corpus -- tests/fixtures/sessions "$fuzz_dir/corpus"

status=0
for target in "${targets[@]}"; do
    echo "fuzz.sh: $target for ${seconds}s" >&2
    mkdir -p "$fuzz_dir/artifacts/$target"
    # -rss_limit_mb / -malloc_limit_mb turn unbounded memory into a crash; -timeout
    # turns a hang into one.
    if ! cargo fuzz run --fuzz-dir "$fuzz_dir" --jobs "$jobs" "$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -dict="$PWD/$fuzz_dir/rtmp.dict" -print_final_stats=1; then
        echo "fuzz.sh: $target FAILED; reproducer in $fuzz_dir/artifacts/$target" >&2
        status=1
    fi
done
exit $status
