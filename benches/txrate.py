#!/usr/bin/env python3
"""Sample an interface's TX packet counter every 5 ms until STOPFILE exists; print the send
rate between the moments 1 % and 99 % of the packets had left — the same measure for every
sender, blind to a stray packet at start-up (neighbour resolution) or at the end."""
import sys, time, os
iface, stopfile = sys.argv[1], sys.argv[2]
path = f"/sys/class/net/{iface}/statistics/tx_packets"
samples = []
while not os.path.exists(stopfile):
    with open(path) as f:
        samples.append((time.monotonic(), int(f.read())))
    time.sleep(0.005)
base = samples[0][1]
total = samples[-1][1] - base
if total < 100:
    print("0 0 0"); sys.exit()
def when(frac):
    return next(t for t, n in samples if n - base >= frac * total)
t0, t1 = when(0.01), when(0.99)
print(f"{total} {t1 - t0:.3f} {0.98 * total / (t1 - t0):.0f}")
