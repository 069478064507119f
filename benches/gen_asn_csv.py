#!/usr/bin/env python3
"""Write a full-table-sized ip-location-db ASN CSV (asn-ipv4.csv layout): ~412k inclusive
ranges over public IPv4 space from ~75k ASNs with a heavy-tailed number of ranges each and
quoted organization names with commas. Like the real file (built from BGP announcements),
a range is 1-3 adjacent aligned blocks (/24 most often, up to /12) of one AS, so many ranges
are not CIDR-aligned as a whole. Deterministic (seeded).
Usage: gen_asn_csv.py OUT [ranges] [asns]"""
import random, sys, ipaddress

out = sys.argv[1]
n_ranges = int(sys.argv[2]) if len(sys.argv) > 2 else 412_000
n_asns = int(sys.argv[3]) if len(sys.argv) > 3 else 75_000
rng = random.Random(412)
weights = [1.0 / (i + 1) ** 0.8 for i in range(n_asns)]
pool = list(range(1000, 1000 + n_asns))
# every AS at least once, the rest heavy-tailed
asns = pool + rng.choices(pool, weights=weights, k=n_ranges - n_asns)
rng.shuffle(asns)
lens = [24] * 60 + [23] * 10 + [22] * 12 + [21] * 6 + [20] * 5 + [19] * 3 + [18] * 2 + [17, 16]
limit = int(ipaddress.IPv4Address("224.0.0.0"))
a = int(ipaddress.IPv4Address("1.0.0.0"))
with open(out, "w") as f:
    for asn in asns:
        start = None
        for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
            l = rng.choice(lens)
            size = 1 << (32 - l)
            a = (a + size - 1) // size * size  # align
            if start is None:
                start = a
            a += size
        end = a - 1
        if end >= limit:
            break
        name = f'"Example Networks {asn}, Inc."' if asn % 3 == 0 else f"EXAMPLE-AS{asn}"
        f.write(f"{ipaddress.IPv4Address(start)},{ipaddress.IPv4Address(end)},{asn},{name}\n")
        if rng.random() < 0.3:
            a += 256 * rng.randrange(1, 64)  # unrouted gap
