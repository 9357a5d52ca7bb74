#!/usr/bin/env bash
# Builds every fuzz target and runs each for a short time; exits non-zero if any target
# crashes (panic, failed assertion, timeout, out-of-memory) or fails to build.
#
#   fuzz/run-short.sh [SECONDS] [TARGET...]
#
#   SECONDS          per-target run time, default 20
#   TARGET...        default: every target `cargo fuzz list` prints
#
# Environment:
#   FUZZ_SANITIZER   address (cargo-fuzz's default) or none; default none, which builds
#                    faster and runs faster (the workspace forbids unsafe code)
#   FUZZ_MAX_LEN     libFuzzer -max_len, default 4096
#   FUZZ_TARGET_DIR  cargo target directory, default fuzz/target/sanitizer-<FUZZ_SANITIZER>
#                    (one per sanitizer: switching sanitizers in one directory rebuilds all)
#   FUZZ_JOBS        cargo build jobs (passed as CARGO_BUILD_JOBS when set)
#   FUZZ_NO_INSTALL  set to 1 to fail instead of running `cargo install cargo-fuzz --locked`
#                    when cargo-fuzz is missing
#
# The committed seeds in fuzz/corpus/<target>/ are only read: new inputs go to a scratch
# directory that is removed afterwards. A crashing input is kept in fuzz/artifacts/<target>/
# and its path is printed; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none --target-dir fuzz/target/sanitizer-none \
#       <target> fuzz/artifacts/<target>/crash-…
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

seconds="${1:-20}"
shift || true
case "$seconds" in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac
sanitizer="${FUZZ_SANITIZER:-none}"
max_len="${FUZZ_MAX_LEN:-4096}"
target_dir="${FUZZ_TARGET_DIR:-$PWD/target/sanitizer-$sanitizer}"
if [[ -n "${FUZZ_JOBS:-}" ]]; then
    export CARGO_BUILD_JOBS="$FUZZ_JOBS"
fi

# cargo-fuzz passes nightly-only flags (-Zsanitizer, -Cpasses=sancov-module, …) to rustc. On a
# stable toolchain RUSTC_BOOTSTRAP=1 unlocks them; a nightly toolchain needs nothing.
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    if [[ "${FUZZ_NO_INSTALL:-0}" == 1 ]]; then
        echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
        exit 2
    fi
    echo "== installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
if [[ ${#targets[@]} -eq 0 ]]; then
    echo "no fuzz targets found" >&2
    exit 2
fi

echo "== building ${targets[*]} (sanitizer: $sanitizer)"
build_start=$SECONDS
cargo fuzz build --sanitizer "$sanitizer" --target-dir "$target_dir"
echo "== built in $((SECONDS - build_start)) s"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

failed=()
for target in "${targets[@]}"; do
    echo "== fuzzing $target for ${seconds} s"
    mkdir -p "$scratch/$target"
    seeds=()
    if [[ -d "corpus/$target" ]]; then
        seeds=("corpus/$target")
    fi
    log="$scratch/$target.log"
    dict=()
    if [[ -f "dict/$target.dict" ]]; then
        dict=(-dict="$PWD/dict/$target.dict")
    fi
    # The first corpus directory is the one libFuzzer writes to: the scratch one.
    if cargo fuzz run --sanitizer "$sanitizer" --target-dir "$target_dir" \
        "$target" "$scratch/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "${dict[@]}" >"$log" 2>&1; then
        # One summary line: runs, exec/s, coverage.
        grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true
    else
        failed+=("$target")
        echo "!! $target FAILED"
        # The panic message (before the long backtrace), then libFuzzer's closing lines.
        grep -A 6 -m 1 'panicked at' "$log" || true
        echo "!! ... the end of its log:"
        tail -n 25 "$log"
        grep -Eo 'artifacts/[A-Za-z0-9_]+/(crash|timeout|oom|leak|slow-unit)-[0-9a-f]+' "$log" \
            | sort -u | sed 's|^|!! crashing input: fuzz/|' || true
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "== FAILED: ${failed[*]}"
    exit 1
fi
echo "== all ${#targets[@]} targets ran ${seconds} s without a crash"
