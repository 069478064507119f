#!/usr/bin/env bash
# Benchmark: `crawler scan` vs ZMap on the large lab: 131,072 addresses, port 25 only, rate
# unlimited, both run from the same vantage namespace in this script. ZMAP=/path/to/zmap picks
# the ZMap binary (default: `zmap` on the PATH, Debian's 2.1.1); every ratio names the version
# it is against. ZMap 4.3 is what researchers run today: build it from its source (zmap/zmap,
# cmake; see its INSTALL.md) and pass its binary. (Its cmake step rewrites an existing
# /etc/zmap/zmap.conf for 4.x — restore Debian's afterwards; this script gives ZMap an empty
# config file, so neither version reads it.)
#  1. send rate into a sink (the core router drops everything from the vantage),
#     measured identically for both from the vantage interface's TX counter;
#  2. responsive scan: wall time, open ports found vs the ground truth, RSTs recorded;
#  (1 and 2 are run for each tool's default sender threads and for matched thread counts,
#  interleaved, RUNS times each (default 5), and compared by their medians)
#  3. peak memory of a 1 M-probe crawl (131,072 targets x 8 ports) and of a 2 M-probe one.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace -q
T=$(realpath "${CARGO_TARGET_DIR:-target}")/release
W=${WORK:-$(mktemp -d)}
chmod 755 "$W" # started as root, the crawler writes as nobody once its sockets are open
ST=$W/lab
L=$T/lab; CR=$T/crawler
ZB=$(command -v "${ZMAP:-zmap}") || { echo "no ZMap binary: ${ZMAP:-zmap}" >&2; exit 1; }
: > "$W/empty"
# An empty config file here too: ZMap 4.x refuses Debian's /etc/zmap/zmap.conf even for --version.
ZV="ZMap $("$ZB" -C "$W/empty" --version 2>&1 | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1)"
$L up tests/topologies/large.toml --state "$ST"
trap '$L down --state "$ST"' EXIT
j() { python3 -c "import json;print(json.load(open('$ST/lab.json'))['$1'])"; }
V=$(j vantage); C=$(j core)
. benches/sink.sh
GW=$(ip -n "$C" link show v0 | awk '/ether/{print $2}')
D=$ST/datasets
# Every address, .0 and .255 included: ZMap scans them all, and both must send the same probes.
$CR --quiet plan --routes "$D/routeviews-rv2-lab.pfx2as" --orgs "$D/lab.as-org2info.jsonl" --allow-reserved 198.18.0.0/15 --per-asn 40000 --keep-edge-addresses --out "$W/plan.parquet" >/dev/null
echo 198.18.0.0/15 > "$W/allow"; : > "$W/empty"
OPEN=$(python3 -c "
import json; print(sum(1 for l in open('$D/truth-hosts.jsonl') if json.loads(l)['ports']['25']['expect']['reply']=='synack'))")
RSTS=$(python3 -c "
import json; print(sum(1 for l in open('$D/truth-hosts.jsonl') if json.loads(l)['ports']['25']['expect']['reply']=='rst'))")
echo "large lab: 131072 addresses, $OPEN open and $RSTS closed (RST) on port 25 per the ground truth; crawler vs $ZV ($ZB)"
ONE=(--ports 25 --control-ports none --random-ports 0 --reflect-ports none --rate 0 --asn-rate 0 --net-rate 0 --allow-reserved 198.18.0.0/15)
ZMAP=("$ZB" -C "$W/empty" -p 25 -i eth0 -G "$GW" -S 192.0.2.2 -b "$W/empty" -w "$W/allow" -r 100000000 -q)
RUNS=${RUNS:-5}
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
# Three pairings, each run interleaved (zmap, crawler, zmap, ...) so drifts in the lab hit both:
# each tool with its own default threads (ZMap 2.1.1: 1 sender; ZMap >= 3.0 and the crawler:
# one per core, at most 4), then matched thread counts.
PAIRS=("default::" "1 thread each:-T 1:--senders 1" "2 threads each:-T 2:--senders 2")

echo "== 1. send rate into a sink ($RUNS interleaved runs per pairing, median)"
sink_on
for pair in "${PAIRS[@]}"; do
  IFS=: read -r name zt ct <<<"$pair"; zs=(); cs=()
  for i in $(seq "$RUNS"); do
    z=$(txrate "${ZMAP[@]}" $zt -c 0 -o /dev/null)
    rm -rf "$W/sink"; c=$(txrate "$CR" --quiet scan --plan "$W/plan.parquet" --out "$W/sink" "${ONE[@]}" $ct --retries 0 --cooldown 0)
    echo "  [$name] run $i: $ZV $z | crawler $c (packets s pps)"
    zs+=("${z##* }"); cs+=("${c##* }")
  done
  zm=$(med "${zs[@]}"); cm=$(med "${cs[@]}")
  echo "sink [$name], median of $RUNS: $ZV $zm pps, crawler $cm pps, ratio crawler/zmap = $(ratio "$cm" "$zm") (vs $ZV)"
done
sink_off

echo "== 2. responsive scan (2 s cooldown, one probe per target; $RUNS interleaved runs per pairing, median)"
for pair in "${PAIRS[@]}"; do
  IFS=: read -r name zt ct <<<"$pair"; zs=(); cs=()
  for i in $(seq "$RUNS"); do
    /usr/bin/time -o "$W/t" -f "%e" ip netns exec "$V" "${ZMAP[@]}" $zt -c 2 -o "$W/zmap.csv" -f saddr >/dev/null 2>&1; t=$(cat "$W/t")
    zf=$(grep -cE '^[0-9]+\.' "$W/zmap.csv" || true) # addresses only (ZMap 4 may write a header row)
    rm -rf "$W/resp"
    /usr/bin/time -o "$W/t" -f "%e" ip netns exec "$V" "$CR" --quiet scan --plan "$W/plan.parquet" --out "$W/resp" "${ONE[@]}" $ct --retries 0 --cooldown 2 >/dev/null; u=$(cat "$W/t")
    read -r cf cr <<<"$(duckdb -noheader -csv -c "select count(*) filter (where reply='synack'), count(*) filter (where reply='rst') from '$W/resp/*/*/*.parquet'" | tr ',' ' ')"
    echo "  [$name] run $i: $ZV $t s, open found $zf/$OPEN, RSTs recorded 0 | crawler $u s, open found $cf/$OPEN, RSTs recorded $cr/$RSTS, every probe a row"
    zs+=("$t"); cs+=("$u")
  done
  zm=$(med "${zs[@]}"); cm=$(med "${cs[@]}")
  echo "responsive [$name], median of $RUNS: $ZV $zm s, crawler $cm s, ratio crawler/zmap = $(ratio "$cm" "$zm") (vs $ZV; best: zmap $(printf '%s\n' "${zs[@]}" | sort -g | head -1) s, crawler $(printf '%s\n' "${cs[@]}" | sort -g | head -1) s)"
done

echo "== 3. peak memory: a 1 M-probe crawl (131072 targets x 8 ports) and a 2 M-probe one (x 16), default retries"
# Per probe the scan keeps one answered bit; send times live in a send log of at most 2^20
# slots, so the peak should not grow with the plan beyond the bitmap (+128 KiB per M probes).
for rp in 2 10; do
  rm -rf "$W/full"
  ip netns exec "$V" /usr/bin/time -f "crawler: %e s wall, %M KiB peak RSS" "$CR" --quiet scan --plan "$W/plan.parquet" --out "$W/full" --rate 0 --asn-rate 0 --net-rate 0 --allow-reserved 198.18.0.0/15 --random-ports $rp --reflect-ports none --retry-delay 1 --cooldown 2 2>&1 | grep -E "planned|sent|peak"
  echo "  rows: $(duckdb -noheader -csv -c "select count(*) || ' rows, ' || count(distinct (ip, port)) || ' distinct (ip, port)' from '$W/full/*/*/*.parquet'")"
done
