#!/usr/bin/env bash
# Benchmark: `analysis report` vs DuckDB running the shipped SQL — analysis/sql/providers.sql
# (inbound) and analysis/sql/outbound.sql (reflection), one DuckDB process for both — on the
# same crawl files, written by `lab gen-crawl` in the shape of a real crawl (12 probes per host,
# the crawler's write order, Internet reply mixes). Runs interleaved, best of $RUNS; prints per
# size both times and their ratio, and both peak RSS and theirs.
#
#   SIZES   rows per crawl (default 10000000); SIZES="10000000 100000000" adds the 100 M-row
#           crawl (1.3 GB of Parquet, generated in ~3 min; minutes per run — not for CI)
#   ASES    ASes of the generated crawl (default 2000, as before; 0: one per 64 hosts, the
#           crawler's default --per-asn: 13,020 at 10 M rows)
#   RUNS    runs of each (default 3)   WORK   where crawls and reports go (kept for reuse)
#
# Targets: analysis time <= 0.5 x DuckDB's; analysis peak RSS <= 1 GiB.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-10000000}
RUNS=${RUNS:-3}
W=${WORK:-$(mktemp -d)}
cargo build --release -p analysis -p port25-lab -q
T=$(realpath "${CARGO_TARGET_DIR:-target}")/release
echo "duckdb $(duckdb --version | cut -d' ' -f1), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
# "seconds KiB" of one command (its stdout discarded; a failure stops the benchmark).
measure() {
  if ! /usr/bin/time -f "%e %M" -o "$W/time" "$@" >/dev/null 2>"$W/stderr"; then
    cat "$W/stderr" >&2
    echo "failed: $*" >&2
    exit 1
  fi
  tail -1 "$W/time"
}
mib() { echo $(( $1 / 1024 )); }
for ROWS in $SIZES; do
  ases=${ASES:-2000}
  [ "$ases" = 0 ] && ases=$(( ROWS / 12 / 64 ))
  D="$W/crawl-$ROWS-$ases"
  [ -d "$D/crawl_date=2026-11-01" ] || $T/lab gen-crawl --rows "$ROWS" --ases "$ases" --files $(( (ROWS + 999999) / 1000000 )) --out "$D" >/dev/null
  echo "== $ROWS rows: $(( ROWS / 12 )) hosts in $ases ASes, $(du -sh "$D" | cut -f1) in $(ls "$D"/crawl_date=*/crawl_id=*/*.parquet | wc -l) files"
  a=(); d=()
  for i in $(seq "$RUNS"); do
    t=$(measure $T/analysis report --quiet --no-trend --data "$D" --routes "$D/routes.pfx2as" --orgs "$D/as-org2info.jsonl" --out "$W/report-$ROWS")
    a+=("$t"); echo "analysis run $i: ${t% *} s, $(mib "${t#* }") MiB peak RSS"
    t=$(measure duckdb -c "SET VARIABLE data = '$D/**/*.parquet'; SET VARIABLE orgs = '$D/as-org2info.jsonl';" \
          -c ".read analysis/sql/providers.sql" -c ".read analysis/sql/outbound.sql")
    d+=("$t"); echo "duckdb   run $i: ${t% *} s, $(mib "${t#* }") MiB peak RSS"
  done
  best() { printf '%s\n' "$@" | cut -d' ' -f1 | sort -n | head -1; }
  peak() { printf '%s\n' "$@" | cut -d' ' -f2 | sort -n | tail -1; }
  ab=$(best "${a[@]}"); db=$(best "${d[@]}"); am=$(peak "${a[@]}"); dm=$(peak "${d[@]}")
  echo "best of $RUNS at $ROWS rows: analysis ${ab} s, duckdb ${db} s: time ratio analysis/duckdb $(python3 -c "print(f'{$ab/$db:.2f}')") (target <= 0.5)"
  echo "peak RSS at $ROWS rows (highest of $RUNS): analysis $(mib "$am") MiB (target <= 1024), duckdb $(mib "$dm") MiB: ratio $(python3 -c "print(f'{$am/$dm:.2f}')")"
done
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
