# Shared by scan-vs-zmap.sh and send-ab.sh (sourced): a sink on the large lab's core router and
# the send rate of one command from the vantage's TX counter. Needs W (work dir), V (vantage
# namespace), C (core namespace).
sink_on() { # drop everything the vantage sends, at the core's first hook
  ip netns exec "$C" nft -f - <<'NFT'
table inet sink {
  chain pre {
    type filter hook prerouting priority -400; policy accept;
    iifname "v0" drop
  }
}
NFT
}
sink_off() { ip netns exec "$C" nft delete table inet sink; }
txrate() { # command... ; prints "packets seconds pps"; stops the script if the command fails
  rm -f "$W/stop"; ip netns exec "$V" python3 benches/txrate.py eth0 "$W/stop" > "$W/tx" & local s=$!
  sleep 0.3
  if ! ip netns exec "$V" "$@" >/dev/null 2>"$W/err"; then touch "$W/stop"; wait $s; echo "failed: $*" >&2; cat "$W/err" >&2; exit 1; fi
  sleep 0.2; touch "$W/stop"; wait $s; cat "$W/tx"
}
