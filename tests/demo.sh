#!/usr/bin/env bash
# The main job on the lab Internet: build, bring the default lab up, plan, crawl it from the
# vantage namespace, print and write the provider report, take the lab down.
# Usage: tests/demo.sh [lab demo options, e.g. --out lab-runs/demo --rate 20000]
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (Debian packages)"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}"
fi
cargo build --release --workspace
exec $SUDO ./target/release/lab demo "$@"
