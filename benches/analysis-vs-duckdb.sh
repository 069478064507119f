#!/usr/bin/env bash
# Benchmark: `analysis report` on a 10 M-row crawl (crawler schema, synthetic) vs DuckDB
# running the shipped per-provider SQL on the same files. Prints both times and the ratio.
# Targets: analysis time <= DuckDB time; analysis peak memory <= 2 GiB.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-10000000}
W=${WORK:-$(mktemp -d)}
cargo build --release -p analysis -p port25-lab -q
[ -d "$W/crawl/crawl_date=2026-11-01" ] || target/release/lab gen-crawl --rows "$ROWS" --out "$W/crawl"
echo "crawl: $(du -sh "$W/crawl" | cut -f1) in $(ls "$W"/crawl/crawl_date=*/crawl_id=*/ | wc -l) files, $ROWS rows; duckdb $(duckdb --version | cut -d' ' -f1)"
best() { sort -n | head -1; }
a=(); d=()
for i in 1 2 3; do
  t=$( { /usr/bin/time -f "%e %M" target/release/analysis report --quiet --no-trend --data "$W/crawl" \
        --routes "$W/crawl/routes.pfx2as" --orgs "$W/crawl/as-org2info.jsonl" --out "$W/report" >/dev/null; } 2>&1 | tail -1)
  a+=("$t"); echo "analysis run $i: ${t% *} s, ${t#* } KiB peak RSS"
  t=$( { /usr/bin/time -f "%e %M" duckdb -c "SET VARIABLE data = '$W/crawl/**/*.parquet'; SET VARIABLE orgs = '$W/crawl/as-org2info.jsonl';" \
        -c ".read analysis/sql/providers.sql" >/dev/null; } 2>&1 | tail -1)
  d+=("$t"); echo "duckdb   run $i: ${t% *} s, ${t#* } KiB peak RSS"
done
ab=$(printf '%s\n' "${a[@]}" | cut -d' ' -f1 | best); db=$(printf '%s\n' "${d[@]}" | cut -d' ' -f1 | best)
echo "best of 3: analysis ${ab} s, duckdb ${db} s, ratio analysis/duckdb = $(python3 -c "print(f'{$ab/$db:.2f}')")"
