#!/usr/bin/env bash
# Runs each cargo-fuzz target for SECONDS (default 60), at most JOBS (default 2) at a time, at
# low priority, and prints per target: seconds, executions (libFuzzer's
# stat::number_of_executed_units) and crashes (artifacts written).
#
#   fuzz/run.sh [SECONDS] [TARGET...]        e.g. fuzz/run.sh 900
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). On the pinned stable toolchain the
# sanitizer flags need RUSTC_BOOTSTRAP=1, which this script sets. Seeds are read from
# corpus/<target>/ (committed); what a run finds goes to runs/<target>/ (not committed), crash
# inputs to artifacts/<target>/, logs to runs/<target>.log. Inputs that once crashed (fixed since,
# each a regression test in its crate) are in regressions/<target>/ and read as seeds too.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
jobs=${JOBS:-2}
export RUSTC_BOOTSTRAP=1
nice -n 19 cargo fuzz build >/dev/null
mkdir -p runs

run_one() {
    local t=$1
    mkdir -p "runs/$t" "artifacts/$t"
    local before
    before=$(find "artifacts/$t" -type f | wc -l)
    local dirs=("runs/$t" "corpus/$t")
    [ -d "regressions/$t" ] && dirs+=("regressions/$t")
    nice -n 19 cargo fuzz run "$t" "${dirs[@]}" -- \
        -max_total_time="$secs" -print_final_stats=1 -timeout=20 -rss_limit_mb=2048 \
        >"runs/$t.log" 2>&1 || true
    local execs crashes
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "runs/$t.log" | awk '{s+=$2} END {print s+0}')
    crashes=$(( $(find "artifacts/$t" -type f | wc -l) - before ))
    printf '%-14s %6ss %14s execs %4s crashes\n' "$t" "$secs" "$execs" "$crashes"
}

running=0
for t in "${targets[@]}"; do
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait
