#!/usr/bin/env bash
# Run every fuzz target (fuzz/, cargo-fuzz on nightly) for a fixed number of executions and
# print, per target, the executions, the time and the result. The reply parser gets 10 M
# runs, every other target 1 M. A crash leaves its input in fuzz/artifacts/TARGET/ and makes
# the script exit non-zero at the end.
#
#   benches/fuzz.sh                   # all targets
#   benches/fuzz.sh plan_targets      # some
#   RUNS_SCALE=0.01 benches/fuzz.sh   # a quick pass (1 % of the runs)
#
# Needs: rustup's nightly toolchain and `cargo install cargo-fuzz`. The seeds are in
# fuzz/corpus/TARGET (from `lab fuzz-seeds`); what a run finds goes to a scratch corpus under
# fuzz/target/, so the repository's corpus stays small.
set -uo pipefail
cd "$(dirname "$0")/.."
all=(reply_parse routes_pfx2as routes_iptoasn routes_ip_location_db routes_mmdb as2org categories hitlist prefix_list crawl_config plan_targets crawl_file)
targets=("${@:-${all[@]}}")
scale="${RUNS_SCALE:-1}"
if [ ! -d fuzz/corpus/reply_parse ]; then
  cargo build --release -p port25-lab --bin lab
  target/release/lab fuzz-seeds --out fuzz/corpus --fixtures datasets/fixtures --config deploy/crawl.toml.example
fi
(cd fuzz && cargo +nightly fuzz build) || exit 1
failed=0
printf '%-22s %12s %9s %8s  %s\n' target executions seconds exec/s result
for t in "${targets[@]}"; do
  if [ "$t" = reply_parse ]; then runs=10000000; else runs=1000000; fi
  runs=$(awk -v r="$runs" -v s="$scale" 'BEGIN { printf "%d", r * s }')
  work="fuzz/target/corpus-work/$t"
  mkdir -p "$work" "fuzz/artifacts/$t"
  log="fuzz/target/fuzz-$t.log"
  t0=$(date +%s.%N)
  # -timeout=60: under ASan the parquet crate's thrift skipping of a crafted footer or page
  # header takes over 10 s on inputs it parses in 0.5-13 s in release (reported, not fixed
  # here); a real hang still stops the run.
  (cd fuzz && cargo +nightly fuzz run "$t" "../$work" "corpus/$t" -- -runs="$runs" -max_len=65536 -timeout=60 -rss_limit_mb=2048 -print_final_stats=1) >"$log" 2>&1
  rc=$?
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  if [ $rc -eq 0 ] && [ "${execs:-0}" -ge "$runs" ]; then
    result=ok
  else
    result="FAILED (exit $rc; see $log and fuzz/artifacts/$t/)"
    failed=1
  fi
  printf '%-22s %12s %9s %8s  %s\n' "$t" "${execs:-?}" "$secs" "${speed:-?}" "$result"
done
exit $failed
