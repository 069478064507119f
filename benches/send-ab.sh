#!/usr/bin/env bash
# A/B of two crawler builds' send rate into a sink on the large lab (port 25, unlimited rate),
# interleaved run by run so drifts of the machine hit both: is a change slower, or is the
# machine? The sink half of scan-vs-zmap.sh with another crawler as the anchor.
#   A=/path/to/old/crawler [B=target/release/crawler] [RUNS=9] [SENDERS=1] benches/send-ab.sh
# A_PLAN / B_PLAN and A_SCAN / B_SCAN add flags one build knows and the other does not (the
# defaults fit a build from before reflection and .0/.255 skipping as A).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${A:?A=path of the other crawler binary}"
B=${B:-$(pwd)/target/release/crawler}
A_PLAN=${A_PLAN:-}; B_PLAN=${B_PLAN:---keep-edge-addresses}; A_SCAN=${A_SCAN:-}; B_SCAN=${B_SCAN:---reflect-ports none}
W=$(mktemp -d); chmod 755 "$W" # the crawler writes as nobody once its sockets are open
ST=$W/lab; L=target/release/lab
$L up tests/topologies/large.toml --state "$ST" >/dev/null
trap '$L down --state "$ST" >/dev/null' EXIT
j() { python3 -c "import json;print(json.load(open('$ST/lab.json'))['$1'])"; }
V=$(j vantage); C=$(j core); D=$ST/datasets
. benches/sink.sh
plan() { "$1" --quiet plan --routes "$D/routeviews-rv2-lab.pfx2as" --orgs "$D/lab.as-org2info.jsonl" --allow-reserved 198.18.0.0/15 --per-asn 40000 $2 --out "$3" >/dev/null; }
plan "$A" "$A_PLAN" "$W/a.parquet"; plan "$B" "$B_PLAN" "$W/b.parquet"
sink_on
ONE=(--ports 25 --control-ports none --random-ports 0 --rate 0 --asn-rate 0 --net-rate 0 --allow-reserved 198.18.0.0/15 --retries 0 --cooldown 0 --senders "${SENDERS:-1}")
as=(); bs=()
for i in $(seq "${RUNS:-9}"); do
  rm -rf "$W/o"; a=$(txrate "$A" --quiet scan --plan "$W/a.parquet" --out "$W/o" "${ONE[@]}" $A_SCAN)
  rm -rf "$W/o"; b=$(txrate "$B" --quiet scan --plan "$W/b.parquet" --out "$W/o" "${ONE[@]}" $B_SCAN)
  echo "run $i: A $a | B $b (packets s pps)"; as+=("${a##* }"); bs+=("${b##* }")
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
am=$(med "${as[@]}"); bm=$(med "${bs[@]}")
echo "median of ${RUNS:-9}: A $am pps, B $bm pps, ratio B/A = $(python3 -c "print(f'{$bm/$am:.2f}')")"
