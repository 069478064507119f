#!/usr/bin/env bash
# Benchmark: `crawler plan` over a full-table-sized IPv4 routing file (ip-location-db layout,
# ~412k ranges, ~75k ASNs), 64 hosts per ASN. Target: <= 3 s and <= 1 GiB peak on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${WORK:-$(mktemp -d)}
cargo build --release -p crawler -q
[ -f "$W/asn-ipv4.csv" ] || python3 benches/gen_asn_csv.py "$W/asn-ipv4.csv"
echo "input: $(wc -l < "$W/asn-ipv4.csv") ranges, $(cut -d, -f3 "$W/asn-ipv4.csv" | sort -u | wc -l) ASNs"
for i in 1 2 3; do
  /usr/bin/time -f "run $i: %e s wall, %M KiB peak RSS" target/release/crawler --quiet plan \
     --routes "$W/asn-ipv4.csv" --per-asn 64 --seed $i --out "$W/plan.parquet" | tail -2
done
